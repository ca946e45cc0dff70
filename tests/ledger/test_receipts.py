"""Receipts: the leaf hash of an event as built at append time is the one read back later (both backends)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

from services.ledger.leaf import V1, V2, leaf_hash, receipt
from shared.db import Database
from shared.eventstore import EventStore, NewEvent
from shared.eventstore.sequencer import Sequencer
from shared.eventstore.writer import WriterSigner

# Microseconds that a float or a millisecond column would lose, and a time given in another zone.
TIMES = [
    datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 0, 0, 999999, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    datetime(2026, 3, 2, 14, 0, 0, 500000, tzinfo=timezone(timedelta(hours=5))),
]
DATA = {
    "text": 'Қазақстан — «жалған» \u2028 "quoted" \\ \t',
    "emoji": "\U0001f600",
    "duration_ms": 12.0,
    "ratio": 1 / 3,
    "tiny": 5e-07,
    "big": 10**15,
    "nothing": None,
    "flag": True,
    "nested": {"b": [1, 2.5, {"z": None}], "a": "x"},
}


def test_the_leaf_built_at_append_is_the_leaf_read_back(db: Database) -> None:
    store = EventStore(db.dialect, WriterSigner(bytes(range(32))))  # sealed: a format 2 leaf commits to the seal
    appended = []
    for n, at in enumerate(TIMES):
        with db.transaction() as conn:
            appended += store.append(
                conn, "receipts", n, [NewEvent(type="test.fact", data={**DATA, "n": n})], recorded_at=at
            )
    Sequencer(db, store).catch_up()
    with db.read() as conn:
        by_stream = store.read_stream(conn, "receipts")
        by_position = store.read_all(conn, after=0, limit=100, seals=True)
        unsealed = store.read_all(conn, after=0, limit=100)
    assert len(appended) == len(by_stream) == len(by_position) == len(TIMES)
    for at_append, read, tailed, bare in zip(appended, by_stream, by_position, unsealed, strict=True):
        assert at_append.seal is not None and at_append.seal == read.seal == tailed.seal
        assert bare.seal is None  # the other readers do not pay for decoding seals
        for fmt in (V1, V2):
            assert leaf_hash(at_append, fmt) == leaf_hash(read, fmt) == leaf_hash(tailed, fmt)
        assert leaf_hash(bare, V1) == leaf_hash(read, V1)
        assert read.recorded_at == at_append.recorded_at  # microseconds kept by both backends
        assert base64.b64decode(receipt(read)) == leaf_hash(read, V2)
