"""One contract suite for the event store, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError

from shared.db import Database
from shared.eventstore import ConcurrencyError, DuplicateEventError, EventStore, NewEvent
from shared.eventstore.sequencer import Sequencer
from tests.builders import T0
from tests.conftest import PG_ADMIN_URL


def ev(n: int, **extra: object) -> NewEvent:
    return NewEvent(type="test.happened", data={"n": n, **extra})


@pytest.fixture
def store(request: pytest.FixtureRequest) -> EventStore:
    db = request.getfixturevalue("pg" if "pg" in request.fixturenames else "db")
    return EventStore(db.dialect)


def append(db: Database, store: EventStore, stream: str, expected: int, events: list[NewEvent]) -> None:
    with db.transaction() as conn:
        store.append(conn, stream, expected, events, recorded_at=T0)


def sequenced(db: Database, store: EventStore) -> list:
    Sequencer(db, store).catch_up()
    with db.read() as conn:
        return store.read_all(conn, after=0, limit=100_000)


def test_append_then_read_stream_in_version_order(db: Database, store: EventStore) -> None:
    append(db, store, "order-1", 0, [ev(1), ev(2)])
    append(db, store, "order-1", 2, [ev(3)])
    with db.read() as conn:
        got = store.read_stream(conn, "order-1")
        assert [e.version for e in got] == [1, 2, 3]
        assert [e.data["n"] for e in got] == [1, 2, 3]
        assert store.stream_version(conn, "order-1") == 3
        assert store.read_stream(conn, "order-1", after_version=2)[0].data == {"n": 3}
        assert store.read_stream(conn, "nobody") == []


def test_global_positions_are_dense_and_follow_commit_order(db: Database, store: EventStore) -> None:
    append(db, store, "a", 0, [ev(1), ev(2)])
    append(db, store, "b", 0, [ev(3)])
    append(db, store, "a", 2, [ev(4)])
    events = sequenced(db, store)
    assert [e.position for e in events] == [1, 2, 3, 4]
    assert [e.data["n"] for e in events] == [1, 2, 3, 4]
    with db.read() as conn:
        assert [e.position for e in store.read_all(conn, after=2, limit=1)] == [3]
        assert store.head(conn) == 4


@pytest.mark.parametrize("expected", [0, 1, 3])
def test_wrong_expected_version_is_refused_and_writes_nothing(db: Database, store: EventStore, expected: int) -> None:
    append(db, store, "order-1", 0, [ev(1), ev(2)])
    with pytest.raises(ConcurrencyError):
        append(db, store, "order-1", expected, [ev(9)])
    with db.read() as conn:
        assert [e.data["n"] for e in store.read_stream(conn, "order-1")] == [1, 2]


def test_a_refused_append_leaves_no_hole_in_positions(db: Database, store: EventStore) -> None:
    append(db, store, "order-1", 0, [ev(1)])
    with pytest.raises(ConcurrencyError):
        append(db, store, "order-1", 0, [ev(2), ev(3)])
    append(db, store, "order-2", 0, [ev(4)])
    assert [e.position for e in sequenced(db, store)] == [1, 2]


def test_duplicate_event_id_with_other_content_is_refused(db: Database, store: EventStore) -> None:
    first = ev(1)
    append(db, store, "order-1", 0, [first])
    clash = NewEvent(type="test.happened", data={"n": 2}, event_id=first.event_id)
    with pytest.raises(DuplicateEventError):
        append(db, store, "order-2", 0, [clash])
    with pytest.raises(DuplicateEventError):
        append(db, store, "order-1", 1, [ev(3), clash])
    with db.read() as conn:
        assert store.read_stream(conn, "order-2") == []
        assert len(store.read_stream(conn, "order-1")) == 1


def test_re_appending_the_same_events_is_an_idempotent_no_op(db: Database, store: EventStore) -> None:
    batch = [ev(1), ev(2)]
    append(db, store, "order-1", 0, batch)
    with db.transaction() as conn:
        again = store.append(conn, "order-1", 0, batch, recorded_at=T0)
    assert [e.event_id for e in again] == [e.event_id for e in batch]
    assert [e.event_id for e in sequenced(db, store)] == [e.event_id for e in batch]


def test_events_round_trip_data_and_metadata(db: Database, store: EventStore) -> None:
    e = NewEvent(type="order.issued", data={"text": "Ғ ә і ң", "nested": {"a": [1, 2]}}, meta={"actor": "k1"})
    append(db, store, "s", 0, [e])
    got = sequenced(db, store)[0]
    assert (got.event_id, got.type, got.schema_version, got.data, got.meta) == (
        e.event_id,
        "order.issued",
        1,
        e.data,
        {"actor": "k1"},
    )
    assert got.recorded_at.replace(tzinfo=None) == T0.replace(tzinfo=None)


def test_append_many_writes_several_streams_at_once(db: Database, store: EventStore) -> None:
    append(db, store, "a", 0, [ev(1)])
    with db.transaction() as conn:
        got = store.append_many(conn, [("a", 1, [ev(2), ev(3)]), ("b", 0, [ev(4)]), ("c", 0, [])], recorded_at=T0)
    assert [[(e.stream_id, e.version, e.data["n"]) for e in batch] for batch in got] == [
        [("a", 2, 2), ("a", 3, 3)],
        [("b", 1, 4)],
        [],
    ]
    with db.read() as conn:
        streams = store.read_streams(conn, ["a", "b", "nobody"])
    assert {k: [e.data["n"] for e in v] for k, v in streams.items()} == {"a": [1, 2, 3], "b": [4]}
    assert [e.data["n"] for e in sequenced(db, store)] == [1, 2, 3, 4]


@pytest.mark.parametrize("stale", [("a", 0), ("a", 2), ("b", 1)])
def test_append_many_refuses_all_when_one_stream_moved(db: Database, store: EventStore, stale: tuple[str, int]) -> None:
    append(db, store, "a", 0, [ev(1)])
    appends = {"a": 1, "b": 0} | dict([stale])
    with pytest.raises(ConcurrencyError), db.transaction() as conn:
        store.append_many(conn, [(s, v, [ev(9)]) for s, v in appends.items()], recorded_at=T0)
    with db.read() as conn:
        assert {k: len(v) for k, v in store.read_streams(conn, ["a", "b"]).items()} == {"a": 1}
    assert [e.position for e in sequenced(db, store)] == [1]


def test_append_many_refuses_a_foreign_event_id_and_takes_each_stream_once(db: Database, store: EventStore) -> None:
    first = ev(1)
    append(db, store, "a", 0, [first])
    clash = NewEvent(type="test.happened", data={"n": 2}, event_id=first.event_id)
    with pytest.raises(DuplicateEventError), db.transaction() as conn:
        store.append_many(conn, [("b", 0, [ev(5)]), ("c", 0, [clash])], recorded_at=T0)
    with pytest.raises(ValueError), db.transaction() as conn:
        store.append_many(conn, [("b", 0, [ev(5)]), ("b", 1, [ev(6)])], recorded_at=T0)
    with db.read() as conn:
        assert list(store.read_streams(conn, ["a", "b", "c"])) == ["a"]


# --------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg(pg_db: Database) -> Database:
    """PostgreSQL only: SQLite serialises writers and has no triggers guarding history here."""
    return pg_db


@pytest.mark.parametrize("table", ["events", "event_positions"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}", "TRUNCATE {t} CASCADE"])
def test_history_cannot_be_changed_on_postgres(pg: Database, store: EventStore, table: str, statement: str) -> None:
    append(pg, store, "order-1", 0, [ev(1)])
    sequenced(pg, store)
    column = "version" if table == "events" else "position"
    with pytest.raises(DBAPIError, match="append-only"), pg.transaction() as conn:
        conn.execute(text(statement.format(t=table, c=column)))
    assert len(sequenced(pg, store)) == 1


def test_tailing_reader_sees_every_position_once_in_order_under_8_writers(pg: Database, store: EventStore) -> None:
    writers, appends_each = 8, 100
    written: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(appends_each):
                batch = [ev(i, w=w), ev(i, w=w)]
                # Jitter the commit so transactions overlap and commit out of id order.
                with pg.transaction() as conn:
                    store.append(conn, f"w{w}-{i}", 0, batch, recorded_at=T0)
                    if i % 3 == 0:
                        time.sleep(0.002)
                with lock:
                    written.extend(e.event_id for e in batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    seen: list[tuple[int, str]] = []

    def reader() -> None:
        sequencer = Sequencer(pg, store)
        last = 0
        while True:
            finished = done.is_set()
            sequencer.run_once()
            with pg.read() as conn:
                batch = store.read_all(conn, after=last, limit=500)
            for e in batch:
                assert e.position is not None
                seen.append((e.position, e.event_id))
                last = e.position
            if finished and not batch:
                return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    tail = threading.Thread(target=reader)
    tail.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Sequencer(pg, store).catch_up()
    done.set()
    tail.join(timeout=60)
    assert not errors
    positions = [p for p, _ in seen]
    assert positions == list(range(1, len(written) + 1)), "positions must arrive once each, in order, no holes"
    assert sorted(eid for _, eid in seen) == sorted(written)


def _held_open(url: str) -> tuple[Connection, Any]:
    """A session on `url` inside a write transaction that has taken a transaction id, left open."""
    engine = create_engine(url)
    conn = engine.connect()
    conn.execute(text("SELECT txid_current()"))  # takes an id, as a forgotten `BEGIN; UPDATE ...` would
    return conn, engine


def test_a_transaction_open_in_another_database_does_not_hold_back_numbering(pg: Database, store: EventStore) -> None:
    other, engine = _held_open(PG_ADMIN_URL)  # the server's `test` database: another database than pg's
    try:
        append(pg, store, "order-1", 0, [ev(1), ev(2)])
        assert Sequencer(pg, store).run_once() == 2
        with pg.read() as conn:
            assert store.unnumbered(conn) == (0, None)
    finally:
        other.close()
        engine.dispose()


def test_a_transaction_open_in_this_database_holds_back_what_commits_after_it(pg: Database, store: EventStore) -> None:
    append(pg, store, "order-1", 0, [ev(1)])
    open_here, engine = _held_open(pg.engine.url.render_as_string(hide_password=False))
    try:
        append(pg, store, "order-2", 0, [ev(2), ev(3)])
        sequencer = Sequencer(pg, store)
        assert sequencer.run_once() == 1, "only what committed before the open transaction began"
        with pg.read() as conn:
            count, oldest = store.unnumbered(conn)
        assert (count, oldest) == (2, T0), "the lag is visible while numbering waits"
    finally:
        open_here.close()
        engine.dispose()
    assert Sequencer(pg, store).run_once() == 2
    with pg.read() as conn:
        assert [e.position for e in store.read_all(conn)] == [1, 2, 3]
