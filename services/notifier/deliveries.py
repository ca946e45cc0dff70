"""The delivery log as operators read it, and manual redelivery (same webhook-id, a fresh retry cycle)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from services.notifier.errors import DeliveryNotFound, DeliveryPending
from services.notifier.tables import deliveries, delivery_attempts
from shared.clock import Clock
from shared.db import Database, after_commit, matching


def view(row: Any, attempts: list[Any]) -> dict[str, Any]:
    """A delivery with its attempt log, as the API shows it."""
    return {
        "id": row.id,
        "webhook_id": row.id,
        "order_id": row.order_id,
        "platform_id": row.platform_id,
        "webhook_type": row.webhook_type,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at if row.state == "pending" else None,
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
        "last_error": row.last_error,
        "attempt_log": [
            {
                "attempt": a.attempt,
                "started_at": a.started_at,
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "error_kind": a.error_kind,
                "response_excerpt": a.response_excerpt,
                "worker": a.worker,
            }
            for a in attempts
        ],
    }


def find(
    conn: Connection,
    *,
    order_id: str | None = None,
    platform_id: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Deliveries, newest first, each with every attempt made."""
    stmt = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
    stmt = stmt.where(matching(deliveries, order_id=order_id, platform_id=platform_id, state=state))
    rows = conn.execute(stmt).all()
    attempts = conn.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id.in_([r.id for r in rows]))
        .order_by(delivery_attempts.c.attempt)
    ).all()
    by_delivery: dict[str, list[Any]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return [view(r, by_delivery.get(r.id, [])) for r in rows]


def redeliver(conn: Connection, delivery_id: str, now: datetime) -> dict[str, Any]:
    """Start a fresh retry cycle for a delivery that is dead, cancelled or delivered."""
    row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise DeliveryNotFound()
    if row.state == "pending":
        raise DeliveryPending()
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(state="pending", next_attempt_at=now, retry_base=row.attempts, lease_owner=None, lease_expires_at=None)
    )
    return view(conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one(), [])


class DeliveryLog:
    """The delivery log's use cases: each read and each command in a transaction of its own, as OrderService's."""

    def __init__(self, db: Database, clock: Clock, wake: Callable[[], None]) -> None:
        self.db, self.clock, self.wake = db, clock, wake

    def find(
        self,
        *,
        order_id: str | None = None,
        platform_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first, each with every attempt made."""
        with self.db.read() as conn:
            return find(conn, order_id=order_id, platform_id=platform_id, state=state, limit=limit)

    def redeliver(self, delivery_id: str) -> dict[str, Any]:
        """Start a fresh retry cycle for a delivery that is dead, cancelled or delivered; the worker is woken."""
        with self.db.transaction() as conn:
            delivery = redeliver(conn, delivery_id, self.clock.now())
            after_commit(conn, self.wake)  # the worker claims it at once, once it is committed
        return delivery
