"""Notifier test fixtures: a real scripted HTTP receiver on 127.0.0.1 and the notifier's connection pool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from services.notifier.sender import transport
from tests.conftest import drop_pg, fresh_pg_url

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted webhook receiver on an ephemeral 127.0.0.1 port, stopped after the test."""
    with Receiver() as running:
        yield running


@pytest.fixture
async def pool() -> AsyncIterator[httpx.AsyncHTTPTransport]:
    """The notifier's connection pool for one platform (what `Notifier.run` keeps per platform)."""
    async with transport(4) as connections:
        yield connections


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database URL, dropped afterwards (for tests that start notifier processes)."""
    url = fresh_pg_url(pg_template)
    yield url
    drop_pg(url)
