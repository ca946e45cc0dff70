"""Notifier test fixtures: a real scripted HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import drop_pg, fresh_pg_url

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted webhook receiver on an ephemeral 127.0.0.1 port, stopped after the test."""
    with Receiver() as running:
        yield running


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database URL, dropped afterwards (for tests that start notifier processes)."""
    url = fresh_pg_url(pg_template)
    yield url
    drop_pg(url)
