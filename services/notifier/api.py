"""REST routes of the notifier: the delivery and attempt log, and manual redelivery (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select, update

from services.deps import Admin, ContainerDep
from services.notifier.tables import deliveries, delivery_attempts
from shared.problems import NotFound, Problem

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])


def _view(row: Any, attempts: list[Any]) -> dict[str, Any]:
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


@router.get("", summary="Deliveries and their attempt log (admin)")
def list_deliveries(
    principal: Admin,
    c: ContainerDep,
    order_id: Annotated[str | None, Query(max_length=36)] = None,
    platform: Annotated[str | None, Query(max_length=36)] = None,
    state: Literal["pending", "delivered", "dead", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Newest first, each with every attempt made."""
    stmt = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
    if order_id:
        stmt = stmt.where(deliveries.c.order_id == order_id)
    if platform:
        stmt = stmt.where(deliveries.c.platform_id == platform)
    if state:
        stmt = stmt.where(deliveries.c.state == state)
    with c.db.read() as conn:
        rows = conn.execute(stmt).all()
        attempts = conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id.in_([r.id for r in rows]))
            .order_by(delivery_attempts.c.attempt)
        ).all()
    by_delivery: dict[str, list[Any]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return [_view(r, by_delivery.get(r.id, [])) for r in rows]


@router.post("/{delivery_id}/redeliver", summary="Send a delivery again now, same webhook-id (admin)")
def redeliver(delivery_id: str, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """Start a fresh retry cycle for a delivery that is dead, cancelled or delivered."""
    now = c.clock.now()
    with c.db.transaction() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        if row is None:
            raise NotFound("delivery")
        if row.state == "pending":
            raise Problem(
                409, "delivery-pending", "Delivery still pending", "it is already queued for its next attempt"
            )
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(
                state="pending",
                next_attempt_at=now,
                retry_base=row.attempts,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
    c.notifier.wake()
    return _view(row, [])
