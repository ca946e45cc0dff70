"""The event store's tables: `events` (append-only facts) and `event_positions` (the dense global order)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from shared.db import UtcDateTime, metadata

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_pk = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", _pk, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("data", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    # The writer's signature over the event's canonical form (shared/eventstore/writer.py); NULL: not sealed.
    Column("seal", JSON, nullable=True),
    # PostgreSQL: the writing transaction's id (the migration sets DEFAULT pg_current_xact_id()). The
    # sequencer orders committed events by it; SQLite leaves it NULL because it assigns positions inline.
    Column("tx_id", BigInteger, nullable=True),
    UniqueConstraint("stream_id", "version"),
    Index(None, "tx_id", "id"),
)

event_positions = Table(
    "event_positions",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    # No foreign key: its trigger doubled the sequencer's insert, and the row always comes from a SELECT on
    # events in the same statement (both tables are append-only).
    Column("event_pk", _pk, nullable=False, unique=True),
)
