"""The transactional outbox: webhook deliveries written in the same transaction as the event that asks for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update

from services.notifier.tables import deliveries
from shared.eventstore import RecordedEvent
from shared.ids import new_id

# The events a platform is pushed; everything else it reads from its inbox (GET /v1/orders).
WEBHOOK_TYPES = frozenset({"order.issued", "order.withdrawn", "order.upheld", "order.escalated"})


def enqueue(
    conn: Connection,
    event: RecordedEvent,
    platform_id: str,
    order: dict[str, Any],
    links: dict[str, str],
    now: datetime,
) -> str | None:
    """Queue the webhook for `event` if it is one platforms are pushed; returns the delivery (webhook) id."""
    if event.type not in WEBHOOK_TYPES:
        return None
    if event.type == "order.withdrawn":
        # Never push an order after its withdrawal: what is still queued for it is superseded.
        conn.execute(
            update(deliveries)
            .where(deliveries.c.order_id == event.stream_id, deliveries.c.state == "pending")
            .values(state="cancelled", last_error="superseded: the order was withdrawn")
        )
    delivery_id = "msg_" + new_id().replace("-", "")
    payload = {
        "type": event.type,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": {
            "order": order,
            "deadline": order.get("deadline"),
            "links": links,
            "event": {"event_id": event.event_id, "stream_version": event.version, "type": event.type},
        },
    }
    conn.execute(
        deliveries.insert().values(
            id=delivery_id,
            order_id=event.stream_id,
            platform_id=platform_id,
            webhook_type=event.type,
            event_id=event.event_id,
            payload=payload,
            state="pending",
            attempts=0,
            retry_base=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return delivery_id
