"""The kit's own SQLite file: every webhook received, the checkpoints accepted and the proofs joining them, each
order's proven events, and the evidence of every inconsistency the log showed.

Not the service's database and without alembic migrations: a platform runs the kit on its own host, so its tables
have their own MetaData and are created at start-up (as the witness's are).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.receipts.domain import ProvenEvent, Seen, StoredReceipt
from shared.db import UtcDateTime

metadata = MetaData()

receipts = Table(
    "receipts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # A retried delivery carries the same webhook-id: one receipt, the first time it came.
    Column("webhook_id", String(200), nullable=False, unique=True),
    Column("webhook_timestamp", BigInteger, nullable=False),
    Column("webhook_type", String(100), nullable=True),
    Column("order_id", String(100), nullable=True, index=True),
    Column("platform_id", String(100), nullable=True),
    Column("event_id", String(100), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("headers", Text, nullable=False),  # the webhook-* headers as received (JSON), forwarded as they came
    Column("received_at", UtcDateTime, nullable=False),
    # Forwarding to the platform's own system: pending until a 2xx, then forwarded; "none" without a forward URL.
    Column("forward_state", String(16), nullable=False),
    Column("forward_attempts", Integer, nullable=False, default=0),
    Column("forward_next_at", UtcDateTime, nullable=True),
    Column("forward_error", Text, nullable=True),
    Column("forwarded_at", UtcDateTime, nullable=True),
)

checkpoints = Table(
    "receipts_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),  # with every cosignature line served for it so far
    Column("seen_at", UtcDateTime, nullable=False),
)

consistency = Table(
    "receipts_consistency",
    metadata,
    Column("first", BigInteger, primary_key=True, autoincrement=False),
    Column("second", BigInteger, primary_key=True, autoincrement=False),
    Column("proof", Text, nullable=False),  # base64 hashes, one per line
)

proven_events = Table(
    "receipts_events",
    metadata,
    Column("event_id", String(100), primary_key=True),
    Column("order_id", String(100), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("type", String(100), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("leaf_hash", String(64), nullable=False),
    Column("leaf", Text, nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("proof", Text, nullable=False),
)

key_rotations = Table(
    "receipts_key_rotations",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=False),  # 0 for the first rotation from the pinned key
    Column("statement", Text, nullable=False),
)

alerts = Table(
    "receipts_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("checkpoint", Text, nullable=True),  # the note served that caused it
    Column("earlier_checkpoint", Text, nullable=True),  # the accepted note it contradicted
    Column("detail", Text, nullable=False),  # JSON: the proof, the event, whatever else was shown
    # The same inconsistency shown again at every pass is one record, not one per pass.
    Column("digest", String(64), nullable=False, unique=True),
)


@dataclass(frozen=True)
class Alert:
    """One inconsistency the log showed the kit, with its evidence."""

    id: int
    at: datetime
    kind: str
    reason: str
    checkpoint: str | None
    earlier_checkpoint: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class PendingForward:
    """A receipt still to forward to the platform's own system."""

    id: int
    webhook_id: str
    body: bytes
    headers: dict[str, str]
    attempts: int


def create(engine: Engine) -> None:
    """Create the kit's tables if they are missing."""
    metadata.create_all(engine)


def add_receipt(
    conn: Connection,
    receipt: StoredReceipt,
    platform_id: str | None,
    event_id: str | None,
    headers: dict[str, str],
    forward: bool,
) -> bool:
    """Keep a webhook; False if its webhook-id was received before (the first receipt stands)."""
    row = {
        "webhook_id": receipt.webhook_id,
        "webhook_timestamp": receipt.webhook_timestamp,
        "webhook_type": receipt.webhook_type,
        "order_id": receipt.order_id,
        "platform_id": platform_id,
        "event_id": event_id,
        "body": receipt.body,
        "body_sha256": receipt.body_sha256,
        "headers": json.dumps(headers, sort_keys=True),
        "received_at": receipt.received_at,
        "forward_state": "pending" if forward else "none",
        "forward_attempts": 0,
        "forward_next_at": receipt.received_at if forward else None,
    }
    statement = sqlite_insert(receipts).values(**row).on_conflict_do_nothing(index_elements=["webhook_id"])
    return conn.execute(statement.returning(receipts.c.id)).first() is not None


def _receipt(row: Any) -> StoredReceipt:
    return StoredReceipt(
        webhook_id=row.webhook_id,
        webhook_timestamp=int(row.webhook_timestamp),
        webhook_type=row.webhook_type,
        order_id=row.order_id,
        received_at=row.received_at,
        body=bytes(row.body),
        body_sha256=row.body_sha256,
    )


def receipts_of(conn: Connection, order_ids: Sequence[str]) -> dict[str, list[StoredReceipt]]:
    """The receipts of these orders, oldest first."""
    rows = conn.execute(select(receipts).where(receipts.c.order_id.in_(order_ids)).order_by(receipts.c.id))
    found: dict[str, list[StoredReceipt]] = {}
    for row in rows:
        found.setdefault(row.order_id, []).append(_receipt(row))
    return found


def find_receipt(conn: Connection, webhook_id: str) -> StoredReceipt | None:
    """The receipt of one webhook id, if received."""
    row = conn.execute(select(receipts).where(receipts.c.webhook_id == webhook_id)).first()
    return None if row is None else _receipt(row)


def orders_received(conn: Connection, platform_id: str, start: datetime, end: datetime) -> list[str]:
    """The orders of a platform first received in [start, end)."""
    first = (
        select(receipts.c.order_id, func.min(receipts.c.received_at).label("first"))
        .where(receipts.c.platform_id == platform_id, receipts.c.order_id.is_not(None))
        .group_by(receipts.c.order_id)
        .subquery()
    )
    rows = conn.execute(select(first.c.order_id).where(first.c.first >= start, first.c.first < end))
    return [str(r.order_id) for r in rows]


def followed_orders(conn: Connection) -> list[str]:
    """Orders received whose events are still followed: none of their proven events ends them."""
    ended = select(proven_events.c.order_id).where(proven_events.c.type.in_(("order.closed", "order.withdrawn")))
    rows = conn.execute(
        select(receipts.c.order_id)
        .where(receipts.c.order_id.is_not(None), receipts.c.order_id.not_in(ended))
        .group_by(receipts.c.order_id)
        .order_by(func.min(receipts.c.id))
    )
    return [str(r.order_id) for r in rows]


def due_forwards(conn: Connection, now: datetime, limit: int = 100) -> list[PendingForward]:
    """Receipts whose forward is due."""
    rows = conn.execute(
        select(receipts)
        .where(receipts.c.forward_state == "pending", receipts.c.forward_next_at <= now)
        .order_by(receipts.c.id)
        .limit(limit)
    )
    return [PendingForward(r.id, r.webhook_id, bytes(r.body), json.loads(r.headers), r.forward_attempts) for r in rows]


def record_forward(
    conn: Connection, receipt_id: int, *, at: datetime, error: str | None, next_at: datetime | None
) -> None:
    """The outcome of one forward attempt: forwarded, or the error and when to try again."""
    values: dict[str, Any] = {"forward_attempts": receipts.c.forward_attempts + 1, "forward_error": error}
    if error is None:
        values |= {"forward_state": "forwarded", "forwarded_at": at, "forward_next_at": None}
    else:
        values |= {"forward_next_at": next_at}
    conn.execute(update(receipts).where(receipts.c.id == receipt_id).values(**values))


def latest_checkpoint(conn: Connection) -> Seen | None:
    """The largest checkpoint accepted."""
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    return None if row is None else Seen(int(row.size), bytes(row.root), str(row.note))


def all_checkpoints(conn: Connection) -> list[Seen]:
    """Every checkpoint accepted, smallest first."""
    rows = conn.execute(select(checkpoints).order_by(checkpoints.c.size))
    return [Seen(int(r.size), bytes(r.root), str(r.note)) for r in rows]


def accept_checkpoint(conn: Connection, seen: Seen, at: datetime, proof: tuple[int, int, list[str]] | None) -> None:
    """Keep a new latest checkpoint and the proof that joins it to the one before."""
    conn.execute(checkpoints.insert().values(size=seen.size, root=seen.root, note=seen.note, seen_at=at))
    if proof is not None:
        first, second, hashes = proof
        statement = sqlite_insert(consistency).values(first=first, second=second, proof="\n".join(hashes))
        conn.execute(statement.on_conflict_do_nothing())


def rotations(conn: Connection) -> list[str]:
    """The log's key rotations the kit followed from its pinned key, oldest first."""
    return [str(r.statement) for r in conn.execute(select(key_rotations).order_by(key_rotations.c.n))]


def keep_rotations(conn: Connection, statements: Sequence[str]) -> None:
    """Keep the rotations followed (the chain only grows: those kept are a prefix of these)."""
    for n, statement in enumerate(statements):
        conn.execute(sqlite_insert(key_rotations).values(n=n, statement=statement).on_conflict_do_nothing())


def update_note(conn: Connection, size: int, note: str) -> None:
    """The accepted checkpoint of this size with more cosignature lines."""
    conn.execute(update(checkpoints).where(checkpoints.c.size == size).values(note=note))


def consistency_proofs(conn: Connection) -> dict[tuple[int, int], list[str]]:
    """Every consistency proof kept: (first, second) -> base64 hashes."""
    rows = conn.execute(select(consistency))
    return {(int(r.first), int(r.second)): [h for h in r.proof.split("\n") if h] for r in rows}


def add_proven(conn: Connection, event: ProvenEvent) -> None:
    """Keep a proven event (once; the first proof stands)."""
    row = {
        "event_id": event.event_id,
        "order_id": event.order_id,
        "version": event.version,
        "type": event.type,
        "position": event.position,
        "leaf_hash": event.leaf_hash,
        "leaf": event.leaf,
        "tree_size": event.tree_size,
        "proof": "\n".join(event.proof),
    }
    conn.execute(sqlite_insert(proven_events).values(**row).on_conflict_do_nothing(index_elements=["event_id"]))


def proven_of(conn: Connection, order_ids: Sequence[str]) -> dict[str, list[ProvenEvent]]:
    """The proven events of these orders, by version."""
    rows = conn.execute(
        select(proven_events).where(proven_events.c.order_id.in_(order_ids)).order_by(proven_events.c.version)
    )
    found: dict[str, list[ProvenEvent]] = {}
    for r in rows:
        found.setdefault(r.order_id, []).append(
            ProvenEvent(
                event_id=r.event_id,
                order_id=r.order_id,
                version=r.version,
                type=r.type,
                position=int(r.position),
                leaf_hash=r.leaf_hash,
                leaf=r.leaf,
                envelope=json.loads(r.leaf),
                tree_size=int(r.tree_size),
                proof=[h for h in r.proof.split("\n") if h],
            )
        )
    return found


def record_alert(
    conn: Connection,
    *,
    at: datetime,
    kind: str,
    reason: str,
    checkpoint: str | None,
    earlier_checkpoint: str | None,
    detail: dict[str, Any],
) -> None:
    """Keep the evidence of one inconsistency (once: the same one shown again adds nothing)."""
    text = json.dumps(detail, sort_keys=True)
    digest = hashlib.sha256(json.dumps([kind, reason, checkpoint, earlier_checkpoint, text]).encode()).hexdigest()
    row = {
        "at": at,
        "kind": kind,
        "reason": reason,
        "checkpoint": checkpoint,
        "earlier_checkpoint": earlier_checkpoint,
        "detail": text,
        "digest": digest,
    }
    conn.execute(sqlite_insert(alerts).values(**row).on_conflict_do_nothing(index_elements=["digest"]))


def list_alerts(conn: Connection, limit: int = 100) -> list[Alert]:
    """The latest alerts, newest first."""
    rows = conn.execute(select(alerts).order_by(alerts.c.id.desc()).limit(limit))
    return [Alert(r.id, r.at, r.kind, r.reason, r.checkpoint, r.earlier_checkpoint, json.loads(r.detail)) for r in rows]


def counts(conn: Connection) -> dict[str, int]:
    """How many receipts, proven events, checkpoints and alerts the kit holds, and forwards pending or failing."""

    def count(query: Any) -> int:
        return int(conn.execute(query).scalar_one())

    return {
        "receipts": count(select(func.count()).select_from(receipts)),
        "forwards_pending": count(
            select(func.count()).select_from(receipts).where(receipts.c.forward_state == "pending")
        ),
        "forwards_failing": count(
            select(func.count())
            .select_from(receipts)
            .where(receipts.c.forward_state == "pending", receipts.c.forward_attempts > 0)
        ),
        "events_proven": count(select(func.count()).select_from(proven_events)),
        "checkpoints": count(select(func.count()).select_from(checkpoints)),
        "alerts": count(select(func.count()).select_from(alerts)),
    }
