"""The transactional outbox: deliveries queued in the events' own transaction, then claimed and settled by workers.

A claim is a row lease taken with `FOR UPDATE SKIP LOCKED`, so any number of notifier processes share one
PostgreSQL; a delivery is settled only by the worker still holding its lease. The live leases are also what the
per-platform cap counts, so the cap holds for every notifier process on every host together.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, cast, func, select, text, update

from services.ledger.leaf import receipt
from services.notifier.tables import deliveries, delivery_attempts
from shared.bulk import bulk_insert, bulk_update
from shared.bus import Published
from shared.ids import new_id

_INSERT = deliveries.insert()

# The events a platform is pushed; everything else it reads from its inbox (GET /v1/orders).
WEBHOOK_TYPES = frozenset(
    {"order.issued", "order.withdrawn", "order.upheld", "order.escalated", "order.declines_accepted"}
)
# The destination of the copy of each escalation pushed to the supervisor (never a platform's id: those are UUIDs).
SUPERVISOR = "@supervisor"


@dataclass(frozen=True)
class Outbox:
    """Queues the webhook for each published event that platforms are pushed (a handler run in the command's transaction).

    The body is `{type, timestamp, data}`; `data` holds `order` (the order document after the event), `deadline`,
    `links` and `event` (the platform's receipt), and for `order.escalated`, to the platform and to the supervisor
    alike, `escalation: {level, reason}`: which level fired and why, so no receiver infers it from
    `order.escalation_levels`.
    """

    base_url: str
    # None: the order's platform; SUPERVISOR: the supervisor's webhook (escalations).
    destination: str | None = None

    def __call__(self, conn: Connection, published: Published) -> None:
        """Queue the webhook for this event."""
        event, order = published.event, published.view
        platform_id = self.destination or order["platform_id"]
        # A delivery is unique per event; the supervisor's copy gets an id derived from the event's.
        event_id = (
            event.event_id
            if self.destination is None
            else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.destination}/{event.event_id}"))
        )
        if event.type == "order.withdrawn" and self.destination is None:
            # Never push an order after its withdrawal: what is still queued for it is superseded.
            conn.execute(
                update(deliveries)
                .where(deliveries.c.order_id == event.stream_id, deliveries.c.state == "pending")
                .values(state="cancelled", last_error="superseded: the order was withdrawn")
            )
        now = event.recorded_at
        payload: dict[str, Any] = {
            "type": event.type,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": {
                "order": dict(order),
                "deadline": order.get("deadline"),
                "links": self.links(event.stream_id),
                # The platform's receipt: the event's ledger leaf hash (base64), and its position once numbered
                # (SQLite numbers at append; on PostgreSQL the sequencer does it just after commit: null here).
                "event": {
                    "event_id": event.event_id,
                    "stream_version": event.version,
                    "type": event.type,
                    "leaf_hash": receipt(event),
                    "position": event.position,
                },
            },
        }
        if event.type == "order.escalated":
            payload["data"]["escalation"] = {"level": int(event.data["level"]), "reason": str(event.data["reason"])}
        conn.execute(
            _INSERT,  # parameters apart from the statement: its compiled form is cached, not rebuilt per event
            dict(
                id="msg_" + new_id().replace("-", ""),
                order_id=event.stream_id,
                platform_id=platform_id,
                webhook_type=event.type,
                event_id=event_id,
                payload=payload,
                state="pending",
                attempts=0,
                retry_base=0,
                next_attempt_at=now,
                created_at=now,
                request_id=event.meta.get("request_id"),
            ),
        )

    def links(self, order_id: str) -> dict[str, str]:
        """Where a platform acts on an order."""
        base = f"{self.base_url.rstrip('/')}/v1/orders/{order_id}"
        return {
            "self": base,
            "acknowledge": f"{base}/acknowledge",
            "outcomes": f"{base}/outcomes",
            "contest": f"{base}/contest",
            "events": f"{base}/events",
        }


@dataclass(frozen=True)
class Claimed:
    """A leased delivery row: what to send, and which attempt this is."""

    id: str
    order_id: str
    platform_id: str
    webhook_type: str
    body: bytes  # the payload exactly as stored: what is signed and sent
    attempt: int
    retry_base: int
    request_id: str | None = None  # the HTTP request that caused the delivery (for log lines)

    def log_fields(self) -> dict[str, object]:
        """What every log line about this attempt carries (bound to the logging context)."""
        fields: dict[str, object] = {"delivery_id": self.id, "attempt": self.attempt, "platform_id": self.platform_id}
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        return fields


# Claims on PostgreSQL take turns under this transaction-level advisory lock (any constant the service owns), so
# the leases counted by `in_flight` stay true until the claim commits. A claim is one short transaction.
_CLAIM_LOCK = 0x74616B65646F776E  # "takedown"


def in_flight(conn: Connection, now: datetime) -> Counter[str]:
    """Live leases per platform: deliveries being sent by any notifier process (PostgreSQL: fleet-wide, exact).

    Call it first in the claiming transaction: on PostgreSQL it waits for the other claims in progress, so two
    processes cannot both see a free slot and fill it twice. An expired lease (its worker died) counts no more.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK})
    rows = conn.execute(
        select(deliveries.c.platform_id, func.count())
        .where(deliveries.c.lease_owner.is_not(None), deliveries.c.lease_expires_at >= now)
        .group_by(deliveries.c.platform_id)
    )
    return Counter({platform_id: int(n) for platform_id, n in rows})


def claim(
    conn: Connection, worker: str, now: datetime, lease_until: datetime, limit: int, full: Collection[str]
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, skipping rows other workers hold and the platforms in `full`."""
    due = (
        select(deliveries.c.id)
        .where(
            deliveries.c.state == "pending",
            deliveries.c.next_attempt_at <= now,
            (deliveries.c.lease_expires_at.is_(None)) | (deliveries.c.lease_expires_at < now),
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if full:
        due = due.where(deliveries.c.platform_id.not_in(list(full)))
    if conn.dialect.name == "postgresql":
        # The outbox's statistics go stale within seconds (rows leave `pending` as fast as they come), and a
        # planner that believes few rows are due reads and sorts all of them instead of walking the due index in
        # order and stopping after `limit`.
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
    rows = conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=worker, lease_expires_at=lease_until)
        .returning(
            deliveries.c.id,
            deliveries.c.order_id,
            deliveries.c.platform_id,
            deliveries.c.webhook_type,
            cast(deliveries.c.payload, Text).label("body"),
            deliveries.c.attempts,
            deliveries.c.retry_base,
            deliveries.c.request_id,
        )
    ).all()
    return [
        Claimed(
            r.id, r.order_id, r.platform_id, r.webhook_type, r.body.encode(), r.attempts + 1, r.retry_base, r.request_id
        )
        for r in rows
    ]


def release(conn: Connection, worker: str, ids: Sequence[str]) -> None:
    """Give back leases this worker holds, untouched (the deliveries are due again at once)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids), deliveries.c.lease_owner == worker)
        .values(lease_owner=None, lease_expires_at=None)
    )


def cancel(conn: Connection, worker: str, delivery_id: str, reason: str) -> None:
    """Stop a delivery this worker holds (no endpoint to push to: the order waits in the inbox)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.lease_owner == worker)
        .values(state="cancelled", last_error=reason, lease_owner=None, lease_expires_at=None)
    )


def settle(conn: Connection, worker: str, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Write attempts' effects on their deliveries where this worker still holds the lease; returns those ids."""
    return bulk_update(
        conn,
        deliveries,
        "id",
        sorted(rows, key=lambda r: str(r["id"])),  # one lock order for every batch: no deadlock between them
        match={"lease_owner": worker},
        keep_if_null=("next_attempt_at", "delivered_at"),
    )


def log_attempts(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add rows to the attempt log (a unique (delivery, attempt) key refuses a second record of one attempt)."""
    bulk_insert(conn, delivery_attempts, rows)
