"""History changed behind the service's back (triggers disabled), on SQLite and PostgreSQL: `takedown ledger verify`
fails and names the first bad position, every time."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from services.cli import cli
from services.ledger.service import Ledger
from shared.clock import FrozenClock
from shared.db import Database
from shared.eventstore import EventStore
from shared.eventstore.writer import canonical_event, event_digest
from shared.tlog import merkle
from tests.ledger.conftest import T0, append_events, writer

EVENTS = 40


@dataclass
class Tampered:
    """The database, its URL, and the ledger over it (fed and checkpointed before any tampering)."""

    db: Database
    ledger: Ledger

    def verify(self) -> tuple[int, str]:
        """Run the real `takedown ledger verify` on this database: (exit code, everything it printed)."""
        result = CliRunner().invoke(cli, ["ledger", "verify"])
        return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.fixture
def store(db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tampered]:
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", db_url)
    monkeypatch.setenv("TAKEDOWN_LEDGER_ORIGIN", "ledger.test/takedown")
    from services.bootstrap import bootstrap
    from shared.settings import Settings

    # The clock of the events' times: a checkpoint signed "now" would make every later test event backdated.
    container = bootstrap(Settings(), clock=FrozenClock(T0))
    append_events(db, EVENTS // 2)
    container.ledger.checkpoint()
    append_events(db, EVENTS // 2, start=EVENTS // 2)
    container.ledger.checkpoint()
    code, output = Tampered(db, container.ledger).verify()
    assert code == 0 and f"ok: {EVENTS} events" in output, output
    yield Tampered(db, container.ledger)
    container.close()


def _unprotect(conn: Connection) -> None:
    """What an intruder with the database's keys does first."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
        conn.execute(text("ALTER TABLE event_positions DISABLE TRIGGER USER"))
    else:
        for table in ("events", "event_positions"):
            for action in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER {table}_no_{action}"))


def _pk(conn: Connection, position: int) -> int:
    return int(
        conn.execute(text("SELECT event_pk FROM event_positions WHERE position = :p"), {"p": position}).scalar_one()
    )


def _data_text(conn: Connection, pk: int) -> str:
    cast = "data::text" if conn.dialect.name == "postgresql" else "data"
    return str(conn.execute(text(f"SELECT {cast} FROM events WHERE id = :pk"), {"pk": pk}).scalar_one())


def _set_data(conn: Connection, pk: int, data: str) -> None:
    value = "CAST(:d AS json)" if conn.dialect.name == "postgresql" else ":d"
    conn.execute(text(f"UPDATE events SET data = {value} WHERE id = :pk"), {"d": data, "pk": pk})


def _assert_fails_at(store: Tampered, position: int) -> None:
    code, output = store.verify()
    assert code == 1, output
    assert f"first bad position {position}\n" in output, output


POSITIONS = [1, 2, EVENTS // 2, EVENTS - 1, EVENTS]


@pytest.mark.parametrize("position", POSITIONS)
def test_one_byte_of_an_events_data_changed(store: Tampered, position: int) -> None:
    with store.db.transaction() as conn:
        _unprotect(conn)
        pk = _pk(conn, position)
        stored = _data_text(conn, pk)
        at = stored.index("fact number") + 1  # inside a string: the JSON stays valid, one byte differs
        changed = stored[:at] + ("A" if stored[at] != "A" else "B") + stored[at + 1 :]
        assert len(changed.encode()) == len(stored.encode()) and json.loads(changed) != json.loads(stored)
        _set_data(conn, pk, changed)
    _assert_fails_at(store, position)


@pytest.mark.parametrize(
    "column, value",
    [
        ("type", "'test.facT'"),
        ("stream_id", "'order-9'"),
        ("version", "version + 100"),
        ("schema_version", "2"),
        ("event_id", "'00000000-0000-7000-8000-000000000000'"),
    ],
)
def test_one_envelope_field_changed(store: Tampered, column: str, value: str) -> None:
    position = random.Random(column).randint(1, EVENTS)
    with store.db.transaction() as conn:
        _unprotect(conn)
        conn.execute(text(f"UPDATE events SET {column} = {value} WHERE id = :pk"), {"pk": _pk(conn, position)})
    _assert_fails_at(store, position)


def test_recorded_time_moved_by_one_microsecond(store: Tampered) -> None:
    with store.db.transaction() as conn:
        _unprotect(conn)
        conn.execute(
            text("UPDATE events SET recorded_at = :t WHERE id = :pk"),
            {"t": T0 + timedelta(seconds=10, microseconds=1), "pk": _pk(conn, 11)},
        )
    _assert_fails_at(store, 11)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("also_its_position", [False, True])
def test_an_event_deleted(store: Tampered, position: int, also_its_position: bool) -> None:
    with store.db.transaction() as conn:
        _unprotect(conn)
        pk = _pk(conn, position)
        conn.execute(text("DELETE FROM events WHERE id = :pk"), {"pk": pk})
        if also_its_position:
            conn.execute(text("DELETE FROM event_positions WHERE event_pk = :pk"), {"pk": pk})
    _assert_fails_at(store, position)


@pytest.mark.parametrize("first, second", [(1, 2), (3, 17), (EVENTS // 2, EVENTS), (EVENTS - 1, EVENTS)])
@pytest.mark.parametrize("how", ["positions", "contents"])
def test_two_events_swapped(store: Tampered, first: int, second: int, how: str) -> None:
    with store.db.transaction() as conn:
        _unprotect(conn)
        a, b = _pk(conn, first), _pk(conn, second)
        if how == "positions":  # the order of history rewritten: each position points at the other event
            conn.execute(text("UPDATE event_positions SET event_pk = -1 WHERE position = :p"), {"p": first})
            conn.execute(text("UPDATE event_positions SET event_pk = :a WHERE position = :p"), {"a": a, "p": second})
            conn.execute(text("UPDATE event_positions SET event_pk = :b WHERE position = :p"), {"b": b, "p": first})
        else:  # the facts of two events exchanged
            data_a, data_b = _data_text(conn, a), _data_text(conn, b)
            _set_data(conn, a, data_b)
            _set_data(conn, b, data_a)
    _assert_fails_at(store, first)


@pytest.mark.parametrize("position", POSITIONS)
def test_a_forged_event_spliced_into_history(store: Tampered, position: int) -> None:
    """A forged event given a place in history: the events from there on move up by one."""
    with store.db.transaction() as conn:
        _unprotect(conn)
        conn.execute(
            text(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, meta, recorded_at) "
                "VALUES ('00000000-0000-7000-8000-00000000f0f0', 'order-0', 1000, 'order.acknowledged', 1, "
                "'{\"note\": \"backdated\"}', '{}', :t)"
            ),
            {"t": T0},
        )
        forged = int(conn.execute(text("SELECT id FROM events WHERE version = 1000")).scalar_one())
        # Two steps, so that no moment holds two rows at one position (the key is checked row by row).
        conn.execute(text("UPDATE event_positions SET position = -position - 1 WHERE position >= :p"), {"p": position})
        conn.execute(text("UPDATE event_positions SET position = -position WHERE position < 0"))
        conn.execute(
            text("INSERT INTO event_positions (position, event_pk) VALUES (:p, :pk)"), {"p": position, "pk": forged}
        )
    _assert_fails_at(store, position)


def test_a_forged_event_appended_after_the_tree_is_refused_and_named(store: Tampered) -> None:
    """Beyond the tree: the feeder refuses the unsealed event, and verify names it (tests/ledger/test_admission.py)."""
    with store.db.transaction() as conn:
        conn.execute(
            text(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, meta, recorded_at) "
                "VALUES ('00000000-0000-7000-8000-00000000f0f1', 'order-0', 1000, 'order.acknowledged', 1, '{}', '{}', :t)"
            ),
            {"t": T0},
        )
        forged = int(conn.execute(text("SELECT id FROM events WHERE version = 1000")).scalar_one())
        conn.execute(
            text("INSERT INTO event_positions (position, event_pk) VALUES (:p, :pk)"), {"p": EVENTS + 1, "pk": forged}
        )
    assert store.ledger.checkpoint().tree_size == EVENTS
    code, output = store.verify()
    assert code == 1 and f"position {EVENTS + 1}: missing: it has no writer seal" in output, output


def _reseal(conn: Connection, pk: int) -> None:
    """What an intruder holding the writer key too does: seal the changed row anew."""
    event = next(e for e in EventStore(conn.dialect.name).read_all(conn, limit=EVENTS) if e.position == 7)
    form = canonical_event(
        event.event_id,
        event.stream_id,
        event.version,
        event.type,
        event.schema_version,
        event.data,
        event.meta,
        event.recorded_at,
    )
    seal = json.dumps(writer().seal([event_digest(form)])[0])
    value = "CAST(:s AS json)" if conn.dialect.name == "postgresql" else ":s"
    conn.execute(text(f"UPDATE events SET seal = {value} WHERE id = :pk"), {"s": seal, "pk": pk})


@pytest.mark.parametrize("with_the_writer_key", [False, True])
def test_the_tree_rebuilt_to_match_a_change_is_caught(store: Tampered, with_the_writer_key: bool) -> None:
    """An intruder who also rewrites the ledger's tables: without the writer key the feeder refuses the changed
    event; with it, the checkpoints (whose key the intruder lacks) give the change away."""
    with store.db.transaction() as conn:
        _unprotect(conn)
        pk = _pk(conn, 7)
        _set_data(conn, pk, _data_text(conn, pk).replace("fact number", "fact numbeR"))
        if with_the_writer_key:
            _reseal(conn, pk)
        conn.execute(text("DELETE FROM ledger_nodes"))
        conn.execute(text("UPDATE ledger_head SET tree_size = 0, root_hash = :r"), {"r": merkle.EMPTY_ROOT})
    store.ledger.feed()
    code, output = store.verify()
    assert code == 1, output
    if not with_the_writer_key:
        assert store.ledger.head().size == 6
        assert "position 7: forged: its writer seal does not verify (the feeder refuses it)" in output
        return
    assert store.ledger.head().size == EVENTS
    assert f"checkpoint at tree size {EVENTS // 2}: the signed root differs" in output
    assert f"checkpoint at tree size {EVENTS}: the signed root differs" in output


def test_a_stored_checkpoint_changed(store: Tampered) -> None:
    with store.db.transaction() as conn:
        note = conn.execute(
            text("SELECT note FROM ledger_checkpoints WHERE tree_size = :s"), {"s": EVENTS}
        ).scalar_one()
        forged = note.replace(f"\n{EVENTS}\n", f"\n{EVENTS + 1}\n")
        conn.execute(text("UPDATE ledger_checkpoints SET note = :n WHERE tree_size = :s"), {"n": forged, "s": EVENTS})
    code, output = store.verify()
    assert code == 1 and f"checkpoint at tree size {EVENTS}: the signature" in output, output


def test_a_stored_tree_node_changed(store: Tampered) -> None:
    with store.db.transaction() as conn:
        conn.execute(text("UPDATE ledger_nodes SET hash = :h WHERE level = 2 AND idx = 3"), {"h": b"\x00" * 32})
    code, output = store.verify()
    assert code == 1 and "ledger node (2, 3) over positions 13..16 differs" in output, output
