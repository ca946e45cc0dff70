"""The notifier's tables: the outbox of webhook deliveries and the log of every attempt."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from shared.db import UtcDateTime, metadata

# A delivery is one webhook message (its id is the `webhook-id`, stable across retries). It is written in
# the same transaction as the event that asks for it: the transactional outbox.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", String(36), nullable=False),
    Column("platform_id", String(36), nullable=False),
    Column("webhook_type", String(64), nullable=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("payload", JSON, nullable=False),
    # pending → delivered | dead | cancelled; a pending row with a live lease is being sent.
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # Attempts made before the current retry cycle (a manual redelivery starts a new cycle).
    Column("retry_base", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    # The HTTP request whose events asked for this delivery (its id for log lines; never sent to the platform).
    Column("request_id", String(128), nullable=True),
    Index(
        "ix_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
    # The leases in flight, which the per-platform cap counts at every claim: a few rows, never the whole table.
    Index(
        "ix_deliveries_leased",
        "platform_id",
        postgresql_where=text("lease_owner IS NOT NULL"),
        sqlite_where=text("lease_owner IS NOT NULL"),
    ),
    Index(None, "order_id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error_kind", String(32), nullable=True),
    Column("response_excerpt", Text, nullable=True),
    # One row per attempt number: a second worker cannot record the same attempt twice.
    UniqueConstraint("delivery_id", "attempt"),
)
