"""The order view: one row per order for lists, filters and tenancy, kept in the command's own transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    select,
)

from services.orders.sla_clock import (
    SlaPolicy,
    clock_running,
    deadline,
    next_due,
    remaining,
    remaining_seconds,
    review_due,
    status,
    status_at,
)
from services.orders.state import OrderState
from shared.bulk import bulk_update
from shared.db import UtcDateTime, metadata
from shared.events import dump_event


def order_header() -> list[Column[Any]]:
    """The columns every per-order read model keeps: who may see the row (`visibility.visible_in`) and its clock."""
    return [
        Column("platform_id", String(36), nullable=False),
        Column("authority_id", String(64), nullable=False),
        Column("category", String(64), nullable=False),
        Column("issued_at", UtcDateTime, nullable=False),
        Column("notified_at", UtcDateTime, nullable=True),
        Column("deadline", UtcDateTime, nullable=True),
    ]


orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("issuer_reference", String(200), nullable=False),
    *order_header(),
    Column("status", String(16), nullable=False),
    # When the next escalation falls due (`sla_clock.next_due`): the sweep's index.
    # The SLA status itself is not kept here: its one owner is the SLA projection (`services/sla/`), which the
    # sweep moves; `?sla_status=` filters on it, and documents are refreshed on read by `sla_clock.status_at`.
    Column("next_due_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("withdrawn_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("document", JSON, nullable=False),
    UniqueConstraint("authority_id", "issuer_reference"),
    Index(None, "platform_id", "id"),
    Index(None, "authority_id", "id"),
    Index(None, "status", "id"),
    Index(None, "next_due_at"),
)

# Idempotency-Key → the order it created, per issuing authority.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("authority_id", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


# Statements built once, their values passed apart: SQLAlchemy's cache key of an insert with its values inline
# (the document among them) cost a tenth of an order's intake, and a select's where clause is keyed again per call.
_INSERT = orders.insert()
_ROW = select(orders).where(orders.c.id == bindparam("order_id"))


def render(state: OrderState, policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    """The order as clients see it (JSON-ready), derived from its state; its SLA status as of `now`.

    `sla_status` and `remaining_seconds` go stale in a stored document while the clock runs: readers pass the
    document through `refresh` with their own `now`.
    """
    issued = dump_event(state.issued)
    items = [
        {**item, "outcome": dump_event(o) if (o := state.outcomes.get(item["item_id"])) else None}
        for item in issued.pop("items")
    ]
    for outcome in (i["outcome"] for i in items if i["outcome"]):
        outcome.pop("item_id")
    due = deadline(state, policy)
    return {
        "id": issued.pop("order_id"),
        **issued,
        "items": items,
        "status": state.status,
        "version": state.version,
        "notified_at": _iso(state.notified_at),
        "notified_via": state.notified_via,
        "notification": dump_event(state.notification) if state.notification else None,
        "deadline": _iso(due),
        "sla_status": status(state, policy, now),
        "remaining_seconds": remaining(state, policy, now),
        "review_due": _iso(review_due(state, policy)),
        "acknowledged_at": _iso(state.acknowledged_at),
        "contested_at": _iso(state.contested_at),
        "upheld_at": _iso(state.upheld_at),
        "withdrawn_at": _iso(state.withdrawn_at),
        "closed_at": _iso(state.closed_at),
        "declines_accepted_at": _iso(state.declines_accepted_at),
        "escalation_levels": sorted(state.escalation_levels),
        "failed_delivery_attempts": state.failed_attempts,
    }


def refresh(document: dict[str, Any], policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    """A stored document with its SLA status and remaining time as of `now` (both change with time alone only
    while the clock runs: on track, at risk, breached; any other status waits for the next event)."""
    if not clock_running(document.get("sla_status") or "") or not document.get("deadline"):
        return document  # a stopped clock's remaining was frozen when the document was rendered
    due = datetime.fromisoformat(document["deadline"])
    now_status = status_at(document["sla_status"], due, document["category"], policy, now)
    return {**document, "sla_status": now_status, "remaining_seconds": remaining_seconds(now_status, due, None, now)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def save(
    conn: Connection,
    changed: Sequence[tuple[OrderState, dict[str, Any], bool]],
    policy: SlaPolicy,
    now: datetime,
    request_hash: str | None = None,
) -> None:
    """Write the rows of orders that changed: (state, rendered document, new order?); updates in one batch."""
    for state, document, _ in (c for c in changed if c[2]):
        issued = state.issued
        conn.execute(
            _INSERT,
            dict(
                id=issued.order_id,
                issuer_reference=issued.issuer_reference,
                authority_id=issued.authority.id,
                platform_id=issued.platform_id,
                category=issued.category,
                issued_at=issued.issued_at,
                request_hash=request_hash or "",
                **_row(state, document, policy, now),
            ),
        )
    updates = [{"id": s.order_id, **_row(s, doc, policy, now)} for s, doc, new in changed if not new]
    bulk_update(conn, orders, "id", updates)


def _row(state: OrderState, document: dict[str, Any], policy: SlaPolicy, now: datetime) -> dict[str, Any]:
    return {
        # Kept in the command's own transaction, so the sweep finds what falls due even while numbering waits.
        "next_due_at": next_due(state, policy),
        "status": state.status,
        "notified_at": state.notified_at,
        "deadline": deadline(state, policy),
        "closed_at": state.closed_at,
        "withdrawn_at": state.withdrawn_at,
        "version": state.version,
        "document": document,
    }


def claim_due(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Lock up to `limit` orders whose next due time has come, skipping those another sweeper holds."""
    stmt = (
        select(orders.c.id)
        .where(orders.c.next_due_at <= now)
        .order_by(orders.c.next_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [r.id for r in conn.execute(stmt)]


def set_due(conn: Connection, due: Mapping[str, datetime | None]) -> None:
    """Set orders' next due time (the sweep looked at them and found nothing to record)."""
    bulk_update(conn, orders, "id", [{"id": o, "next_due_at": at} for o, at in sorted(due.items())])


def get_row(conn: Connection, order_id: str) -> Any:
    """The order's view row, or None."""
    return conn.execute(_ROW, {"order_id": order_id}).first()
