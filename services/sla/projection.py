"""The SLA projection: each order's SLA row, exact counts per status and group, and the answer-time histogram.

Fed by global position (`shared/projections.py`); counts and histogram change by the difference between an
order's old and new row, in the same transaction, so they always equal a `GROUP BY` over `sla_orders`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from services.orders import sla_clock as sla
from services.orders.repository import OrderRepository, replay_recorded
from services.orders.state import OrderState
from services.sla.tables import sla_answer_histogram, sla_counts, sla_orders
from shared.bulk import bulk_insert, bulk_update
from shared.clock import Clock
from shared.eventstore import EventStore, RecordedEvent

NAME = "sla"
# Histogram resolution: each bucket is 10% wider than the one before. With 5% buckets the cells a grouped summary
# reads doubled from 10k to 1M orders (more of them fill up as data grows; bench/sla.py).
BUCKET_GROWTH = 1.10


def bucket(seconds: float) -> int:
    """The histogram bucket of a duration in seconds (bucket b holds [g^b, g^(b+1)), g = BUCKET_GROWTH; under 1 s: 0)."""
    return max(0, math.floor(math.log(max(seconds, 1.0)) / math.log(BUCKET_GROWTH)))


def bucket_value(b: int) -> float:
    """A bucket's representative duration (its geometric middle), in seconds."""
    return float(BUCKET_GROWTH ** (b + 0.5))


def groups(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (dimension, key) cells an order's row counts in."""
    a, p, c = row["authority_id"], row["platform_id"], row["category"]
    return [("all", ""), ("platform", p), ("category", c), ("authority", a), ("authority|platform", f"{a}|{p}"),
            ("authority|category", f"{a}|{c}")]  # fmt: skip


def row_of(state: OrderState, policy: sla.SlaPolicy, now: datetime) -> dict[str, Any]:
    """An order's SLA row at `now` (pure)."""
    issued = state.issued
    due = sla.deadline(state, policy)
    status = sla.status(state, policy, now)
    at_risk_at = sla.at_risk_from(due, issued.category, policy) if due is not None else None
    answered_at = state.answered_at
    return {
        "order_id": issued.order_id,
        "platform_id": issued.platform_id,
        "authority_id": issued.authority.id,
        "category": issued.category,
        "issued_at": issued.issued_at,
        "notified_at": state.notified_at,
        "deadline": due,
        "at_risk_at": at_risk_at,
        "answered_at": answered_at,
        "clock_stopped_at": sla.clock_stopped_at(state),
        "answer_seconds": (answered_at - state.notified_at).total_seconds()
        if answered_at is not None and state.notified_at is not None
        else None,
        "status": status,
        "next_change_at": sla.next_status_change(status, due, issued.category, policy),
    }


class SlaProjection:
    """Keeps `sla_orders`, `sla_counts` and `sla_answer_histogram` (a projection: see `shared/projections.py`)."""

    name = NAME

    def __init__(self, store: EventStore, policy: sla.SlaPolicy, clock: Clock) -> None:
        self.store, self.policy, self.clock = store, policy, clock
        self.orders = OrderRepository(store)

    def handle(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """Recompute the rows of the orders these events touched."""
        order_ids = sorted({e.stream_id for e in events if e.type.startswith("order.")})
        if not order_ids:
            return
        now = self.clock.now()
        states = self.orders.load(conn, order_ids)
        self.replace(conn, {order_id: row_of(state, self.policy, now) for order_id, state in states.items()})

    def replace(self, conn: Connection, new_rows: Mapping[str, dict[str, Any]]) -> None:
        """Write these orders' rows, moving their counts and histogram entries from the old rows to the new."""
        if not new_rows:
            return
        old_rows = {
            r.order_id: dict(r._mapping)
            for r in conn.execute(select(sla_orders).where(sla_orders.c.order_id.in_(list(new_rows))).with_for_update())
        }
        counts: Counter[tuple[str, str, str]] = Counter()
        histogram: Counter[tuple[str, str, int]] = Counter()
        for order_id, new in new_rows.items():
            old = old_rows.get(order_id)
            for row, sign in ((old, -1), (new, +1)):
                if row is None:
                    continue
                for dimension, key in groups(row):
                    counts[(dimension, key, row["status"])] += sign
                    if row["answer_seconds"] is not None:
                        histogram[(dimension, key, bucket(row["answer_seconds"]))] += sign
        # Rows that exist are updated in place, never deleted and inserted again: under READ COMMITTED a writer
        # blocked on a row (the sweep's `advance` and the projection, say) then reads the version the other one
        # committed; a deleted row it would skip, and insert a second (seen in the system test as pk_sla_orders).
        bulk_update(conn, sla_orders, "order_id", [new_rows[order_id] for order_id in old_rows])
        bulk_insert(conn, sla_orders, [row for order_id, row in new_rows.items() if order_id not in old_rows])
        _add(conn, sla_counts, "status", counts)
        _add(conn, sla_answer_histogram, "bucket", histogram)

    def advance(self, conn: Connection, now: datetime, limit: int = 1000) -> int:
        """Move rows whose status changes by time alone (on_track → at_risk → breached); returns how many moved."""
        due = conn.execute(
            select(sla_orders)
            .where(sla_orders.c.next_change_at <= now)
            .order_by(sla_orders.c.next_change_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        moved: dict[str, dict[str, Any]] = {}
        for r in due:
            row = dict(r._mapping)
            status = sla.status_at(row["status"], row["deadline"], row["category"], self.policy, now)
            change = sla.next_status_change(status, row["deadline"], row["category"], self.policy)
            moved[row["order_id"]] = {**row, "status": status, "next_change_at": change}
        self.replace(conn, moved)
        return len(moved)

    def reset(self, conn: Connection) -> None:
        """Delete every row (before a rebuild)."""
        for table in (sla_orders, sla_counts, sla_answer_histogram):
            conn.execute(delete(table))


def _add(conn: Connection, table: Any, column: str, deltas: Mapping[tuple[str, str, Any], int]) -> None:
    """Add deltas to (dimension, key, <column>) counters, creating the missing ones.

    Counters are changed with `n = n + d`, so two transactions moving the same counter (the projection and the
    sweep) both count; a counter that reaches zero stays (deleting it could race with a concurrent increment).
    """
    changes = {k: d for k, d in deltas.items() if d}
    if not changes:
        return
    cells = list(changes)
    existing = {
        (r[0], r[1], r[2])
        for r in conn.execute(
            select(table.c.dimension, table.c.key, table.c[column]).where(
                table.c.dimension.in_({c[0] for c in cells}), table.c.key.in_({c[1] for c in cells})
            )
        )
    }
    fresh = []
    for cell, d in sorted(changes.items()):
        if cell in existing:
            where = (table.c.dimension == cell[0]) & (table.c.key == cell[1]) & (table.c[column] == cell[2])
            conn.execute(update(table).where(where).values(n=table.c.n + d))
        else:
            fresh.append({"dimension": cell[0], "key": cell[1], column: cell[2], "n": d})
    bulk_insert(conn, table, fresh)


def rows_as_of(conn: Connection, store: EventStore, policy: sla.SlaPolicy, as_of: datetime) -> list[dict[str, Any]]:
    """Every order's SLA row as the service knew it at `as_of`: its events recorded by then, judged at `as_of`."""
    by_order: dict[str, list[RecordedEvent]] = {}
    after = 0
    while batch := store.read_all(conn, after=after, limit=10_000):
        for e in batch:
            if e.type.startswith("order.") and e.recorded_at <= as_of:
                by_order.setdefault(e.stream_id, []).append(e)
        after = batch[-1].position or after
    rows = []
    for stored in by_order.values():
        stored.sort(key=lambda e: e.version)
        if (state := replay_recorded(stored)) is not None:
            rows.append(row_of(state, policy, as_of))
    return rows
