"""Notifier test fixtures: a real scripted HTTP receiver on 127.0.0.1 and an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import drop_pg, fresh_pg_url

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted webhook receiver on an ephemeral 127.0.0.1 port, stopped after the test."""
    with Receiver() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that ignores proxy settings from the environment."""
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database URL, dropped afterwards (for tests that start notifier processes)."""
    url = fresh_pg_url(pg_template)
    yield url
    drop_pg(url)
