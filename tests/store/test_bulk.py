"""One contract suite for `shared.bulk` (batched inserts and updates), run on SQLite and on PostgreSQL.

The rows go into real project tables (the notifier's deliveries and delivery attempts), so that JSON,
nullable timestamps, floats and text all take the path the hot code takes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Table, Text, cast, event, select
from sqlalchemy.exc import StatementError

from services.notifier.tables import deliveries, delivery_attempts
from shared.bulk import bulk_insert, bulk_update
from shared.db import Database, UniqueViolation, compact_json
from tests.builders import T0

PLUS_5 = timezone(timedelta(hours=5))
PAYLOAD = {"title": "Ғ ә", "items": [[1, 2], ["a", None, {"deep": ["ü", 3.5]}]], "ok": True}


def delivery(n: int, **overrides: Any) -> dict[str, Any]:
    """A complete `deliveries` row."""
    row: dict[str, Any] = {
        "id": f"d-{n}",
        "order_id": f"order-{n}",
        "platform_id": "platform-a",
        "webhook_type": "order.issued",
        "event_id": f"event-{n}",
        "payload": {"n": n},
        "state": "pending",
        "attempts": 0,
        "retry_base": 0,
        "next_attempt_at": T0,
        "lease_owner": None,
        "lease_expires_at": None,
        "created_at": T0,
        "delivered_at": None,
        "last_error": None,
        "request_id": None,
    }
    return row | overrides


def attempt(delivery_id: str, n: int, **overrides: Any) -> dict[str, Any]:
    """A complete `delivery_attempts` row (without the generated id)."""
    row: dict[str, Any] = {
        "delivery_id": delivery_id,
        "attempt": n,
        "worker": "w1",
        "started_at": T0 + timedelta(seconds=n, microseconds=123_456),
        "duration_ms": 12.5 + n,
        "status_code": 200,
        "error_kind": None,
        "response_excerpt": "ok",
    }
    return row | overrides


def insert(db: Database, table: Table, rows: list[dict[str, Any]], **kwargs: Any) -> int:
    with db.transaction() as conn:
        return bulk_insert(conn, table, rows, **kwargs)


def update(db: Database, rows: list[dict[str, Any]], **kwargs: Any) -> set[Any]:
    with db.transaction() as conn:
        return bulk_update(conn, deliveries, "id", rows, **kwargs)


def stored_deliveries(db: Database) -> dict[str, dict[str, Any]]:
    with db.read() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(deliveries)).mappings()}


def stored_attempts(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(delivery_attempts).order_by(delivery_attempts.c.id)).mappings()
        return [{k: v for k, v in r.items() if k != "id"} for r in rows]


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# ------------------------------------------------------------------------------------------------ inserts


def test_bulk_insert_returns_the_count_and_stores_every_value_as_written(db: Database) -> None:
    rows = [
        delivery(
            1,
            payload=PAYLOAD,
            lease_owner="w1",
            lease_expires_at=datetime(2026, 3, 2, 14, 30, 15, 250_000, tzinfo=PLUS_5),
            last_error="503 «Service Unavailable»",
        ),
        delivery(2, payload=[["nested", ["list"]], []], next_attempt_at=T0 + timedelta(minutes=5)),
        delivery(3, state="delivered", attempts=1, delivered_at=T0 + timedelta(microseconds=1)),
    ]
    assert insert(db, deliveries, rows) == 3

    got = stored_deliveries(db)
    assert got == {r["id"]: r for r in rows}
    assert got["d-1"]["payload"]["title"] == "Ғ ә"
    assert got["d-1"]["lease_expires_at"] == datetime(2026, 3, 2, 9, 30, 15, 250_000, tzinfo=UTC)
    assert got["d-2"]["lease_owner"] is None
    assert got["d-2"]["delivered_at"] is None
    for row in got.values():
        for column in ("next_attempt_at", "created_at", "lease_expires_at", "delivered_at"):
            if row[column] is not None:
                assert_utc(row[column])
    # The payload is sent exactly as stored: compact UTF-8, not \u escapes.
    with db.read() as conn:
        raw = conn.execute(select(cast(deliveries.c.payload, Text)).where(deliveries.c.id == "d-1")).scalar_one()
    assert raw == compact_json(PAYLOAD)


def test_bulk_insert_stores_floats_integers_text_and_nulls(db: Database) -> None:
    rows = [
        attempt("d-1", 1),
        attempt("d-1", 2, status_code=None, error_kind="timeout", response_excerpt=None, duration_ms=30_000.25),
        attempt("d-2", 1, worker="w2", duration_ms=0, response_excerpt="Ответ: «ошибка» ✓"),
    ]
    assert insert(db, delivery_attempts, rows) == 3

    got = stored_attempts(db)
    assert got == rows
    assert isinstance(got[1]["duration_ms"], float)
    for row in got:
        assert_utc(row["started_at"])


# ------------------------------------------------------------------------------------------------ conflicts


def test_skip_conflicts_on_skips_the_conflicting_rows_and_counts_only_those_inserted(db: Database) -> None:
    insert(db, deliveries, [delivery(1), delivery(2)])

    batch = [
        delivery(3),
        delivery(91, event_id="event-1", payload={"other": True}),  # conflicts with a stored row
        delivery(4),
        delivery(92, event_id="event-2"),  # conflicts with a stored row
        delivery(93, event_id="event-3"),  # conflicts with a row earlier in this batch
    ]
    assert insert(db, deliveries, batch, skip_conflicts_on="event_id") == 2

    got = stored_deliveries(db)
    assert sorted(got) == ["d-1", "d-2", "d-3", "d-4"]
    assert got["d-1"] == delivery(1)
    assert got["d-3"] == delivery(3)
    assert insert(db, deliveries, [delivery(1), delivery(2)], skip_conflicts_on="event_id") == 0


def test_a_conflict_without_skip_is_refused_and_the_call_writes_nothing(db: Database) -> None:
    insert(db, deliveries, [delivery(1)])

    with pytest.raises(UniqueViolation):
        insert(db, deliveries, [delivery(2), delivery(3), delivery(94, event_id="event-1"), delivery(4)])

    assert sorted(stored_deliveries(db)) == ["d-1"]
    assert stored_deliveries(db)["d-1"] == delivery(1)


def test_a_conflict_on_a_composite_unique_constraint_is_refused(db: Database) -> None:
    insert(db, delivery_attempts, [attempt("d-1", 1)])

    with pytest.raises(UniqueViolation):
        insert(db, delivery_attempts, [attempt("d-1", 2), attempt("d-1", 1, worker="w2")])

    assert stored_attempts(db) == [attempt("d-1", 1)]


# ------------------------------------------------------------------------------------------------ updates


def test_bulk_update_changes_only_the_listed_columns_of_the_listed_rows(db: Database) -> None:
    before = [delivery(1), delivery(2), delivery(3, payload=PAYLOAD)]
    insert(db, deliveries, before)

    changes = [
        {
            "id": "d-1",
            "state": "delivered",
            "attempts": 1,
            "delivered_at": T0 + timedelta(seconds=2),
            "payload": PAYLOAD,
        },
        {"id": "d-3", "state": "dead", "attempts": 7, "delivered_at": None, "payload": {"n": 3, "ü": ["x"]}},
        {"id": "d-404", "state": "delivered", "attempts": 1, "delivered_at": T0, "payload": {}},  # no such row
    ]
    assert update(db, changes) == {"d-1", "d-3"}

    got = stored_deliveries(db)
    assert got["d-1"] == before[0] | changes[0]
    assert got["d-2"] == before[1]
    assert got["d-3"] == before[2] | changes[1]
    assert sorted(got) == ["d-1", "d-2", "d-3"]
    assert_utc(got["d-1"]["delivered_at"])


def test_bulk_update_with_match_changes_only_the_matching_rows(db: Database) -> None:
    lease = T0 + timedelta(seconds=30)
    before = [
        delivery(1, lease_owner="w1", lease_expires_at=lease),
        delivery(2, lease_owner="w2", lease_expires_at=lease),
        delivery(3),  # no lease at all
        delivery(4, lease_owner="w1", lease_expires_at=lease),
    ]
    insert(db, deliveries, before)

    release = {"state": "delivered", "lease_owner": None, "lease_expires_at": None, "delivered_at": T0}
    changes = [{"id": f"d-{n}", **release} for n in (1, 2, 3, 4)]
    assert update(db, changes, match={"lease_owner": "w1"}) == {"d-1", "d-4"}

    got = stored_deliveries(db)
    assert got["d-1"] == before[0] | release
    assert got["d-4"] == before[3] | release
    assert got["d-2"] == before[1]
    assert got["d-3"] == before[2]
    # A second settle by the same worker finds the lease gone and changes nothing.
    assert update(db, changes, match={"lease_owner": "w1"}) == set()
    assert stored_deliveries(db) == got


def test_match_on_none_means_null_on_both_backends(db: Database) -> None:
    insert(db, deliveries, [delivery(1), delivery(2, lease_owner="w1")])
    changed = update(db, [{"id": "d-1", "state": "x"}, {"id": "d-2", "state": "x"}], match={"lease_owner": None})
    assert changed == {"d-1"}
    assert {k: v["state"] for k, v in stored_deliveries(db).items()} == {"d-1": "x", "d-2": "pending"}


def test_keep_if_null_keeps_the_stored_value_and_other_nones_set_null(db: Database) -> None:
    lease = T0 + timedelta(seconds=30)
    delivered = T0 + timedelta(seconds=5)
    before = [
        delivery(1, lease_owner="w1", lease_expires_at=lease, delivered_at=delivered, last_error="boom"),
        delivery(2, lease_owner="w1", lease_expires_at=lease, last_error="boom"),
    ]
    insert(db, deliveries, before)

    later = T0 + timedelta(minutes=10)
    changes = [
        {"id": "d-1", "next_attempt_at": None, "delivered_at": None, "lease_expires_at": None, "last_error": None},
        {"id": "d-2", "next_attempt_at": later, "delivered_at": later, "lease_expires_at": None, "last_error": None},
    ]
    assert update(db, changes, keep_if_null=("next_attempt_at", "delivered_at")) == {"d-1", "d-2"}

    got = stored_deliveries(db)
    # Kept: named in keep_if_null and given as None.
    assert got["d-1"]["next_attempt_at"] == T0
    assert got["d-1"]["delivered_at"] == delivered
    # Set: named in keep_if_null but given a value.
    assert got["d-2"]["next_attempt_at"] == later
    assert got["d-2"]["delivered_at"] == later
    # Set to NULL: not named in keep_if_null.
    for key in ("d-1", "d-2"):
        assert got[key]["lease_expires_at"] is None
        assert got[key]["last_error"] is None
        assert got[key]["lease_owner"] == "w1"  # not listed at all


# ------------------------------------------------------------------------------------------------ edges


def test_empty_rows_insert_nothing_and_update_nothing(db: Database) -> None:
    insert(db, deliveries, [delivery(1, lease_owner="w1")])
    before = stored_deliveries(db)

    with db.transaction() as conn:
        assert bulk_insert(conn, deliveries, []) == 0
        assert bulk_insert(conn, deliveries, [], skip_conflicts_on="event_id") == 0
        assert bulk_update(conn, deliveries, "id", []) == set()
        assert bulk_update(conn, deliveries, "id", [], match={"lease_owner": "w1"}, keep_if_null=("state",)) == set()

    assert stored_deliveries(db) == before
    assert stored_attempts(db) == []


def test_a_naive_datetime_is_refused_by_insert_and_nothing_is_written(db: Database) -> None:
    naive = datetime(2026, 3, 2, 9, 0)
    with pytest.raises((ValueError, StatementError)):
        insert(db, delivery_attempts, [attempt("d-1", 1), attempt("d-1", 2, started_at=naive), attempt("d-1", 3)])
    assert stored_attempts(db) == []


def test_a_naive_datetime_is_refused_by_update_and_nothing_is_written(db: Database) -> None:
    before = [delivery(1, lease_owner="w1"), delivery(2, lease_owner="w1")]
    insert(db, deliveries, before)

    naive = datetime(2026, 3, 2, 9, 0)
    changes = [
        {"id": "d-1", "state": "delivered", "delivered_at": T0},
        {"id": "d-2", "state": "delivered", "delivered_at": naive},
    ]
    with pytest.raises((ValueError, StatementError)):
        update(db, changes, match={"lease_owner": "w1"})
    assert stored_deliveries(db) == {r["id"]: r for r in before}


# ------------------------------------------------------------------------------------------------ PostgreSQL


def test_postgres_writes_600_rows_with_one_statement_whose_text_does_not_grow(pg_db: Database) -> None:
    statements: list[tuple[str, bool]] = []

    def record(_conn: Connection, _cursor: Any, statement: str, _params: Any, _ctx: Any, executemany: bool) -> None:
        statements.append((statement, executemany))

    rows = [attempt(f"d-{n // 3}", n % 3 + 1, duration_ms=n / 7, response_excerpt=f"«{n}»") for n in range(600)]
    event.listen(pg_db.engine, "before_cursor_execute", record)
    try:
        assert insert(pg_db, delivery_attempts, rows) == 600
        big = [s for s in statements if "delivery_attempts" in s[0]]
        statements.clear()
        assert insert(pg_db, delivery_attempts, [attempt("d-x", 1)]) == 1
        small = [s for s in statements if "delivery_attempts" in s[0]]
    finally:
        event.remove(pg_db.engine, "before_cursor_execute", record)

    assert len(big) == 1
    assert big[0][1] is False  # one execute, not an executemany
    assert big == small  # the same text for 600 rows as for 1: cached and prepared by the driver
    assert len(big[0][0]) < 4096
    assert stored_attempts(pg_db) == [*rows, attempt("d-x", 1)]


def test_rows_that_name_different_columns_are_refused(db: Database) -> None:
    with pytest.raises(ValueError), db.transaction() as conn:
        bulk_insert(conn, deliveries, [delivery(1), {k: v for k, v in delivery(2).items() if k != "last_error"}])
    with pytest.raises(ValueError), db.transaction() as conn:
        bulk_update(conn, deliveries, "id", [{"id": "d-1", "state": "x"}, {"id": "d-2", "attempts": 1}])
    assert stored_deliveries(db) == {}
