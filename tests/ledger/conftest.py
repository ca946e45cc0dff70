"""Ledger fixtures: a signing key in a temporary file (never ./ledger.key), a ledger over the `db` fixture."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.ledger.service import Ledger
from shared.clock import FrozenClock
from shared.db import Database
from shared.eventstore import EventStore, NewEvent
from shared.eventstore.sequencer import Sequencer
from shared.eventstore.writer import WriterSigner, load_or_create_seed

ORIGIN = "ledger.test/takedown"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEED = hashlib.sha256(b"ledger tests").digest()


@pytest.fixture(autouse=True)
def _ledger_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every container built in these tests keeps its key in the test's own folder."""
    path = tmp_path / "ledger.key"
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(path))
    monkeypatch.delenv("TAKEDOWN_LEDGER_KEY", raising=False)
    return path


def writer() -> WriterSigner:
    """The writer key of this test (its own file, as every container built in it uses): what the ledger trusts."""
    return WriterSigner(load_or_create_seed(os.environ["TAKEDOWN_WRITER_KEY_FILE"]))


def signed_store(db: Database) -> EventStore:
    """An event store that seals with this test's writer key."""
    return EventStore(db.dialect, writer())


@pytest.fixture
def ledger(db: Database) -> Ledger:
    """A ledger over a fresh migrated database (each backend), frozen clock, fixed key, visibility: admins only."""
    return Ledger(
        db,
        signed_store(db),
        FrozenClock(T0),
        origin=ORIGIN,
        seed=lambda: SEED,
        stream_visible=lambda principal, stream_id: False,
    )


def append_events(db: Database, count: int, streams: int = 5, start: int = 0) -> None:
    """Append `count` events round-robin over `streams` streams, one transaction each (sealed), and number them."""
    store = signed_store(db)
    for n in range(start, start + count):
        stream = f"order-{n % streams}"
        with db.transaction() as conn:
            version = store.stream_version(conn, stream)
            data = {"n": n, "text": f"fact number {n}", "nested": {"ok": True, "ratio": n / 7}}
            store.append(conn, stream, version, [NewEvent(type="test.fact", data=data)], T0 + timedelta(seconds=n))
    Sequencer(db, store).catch_up()
