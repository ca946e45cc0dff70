"""The SLA projection's tables, the one owner of each order's SLA status over time: one row per order, exact counts per status and group, an answer-time histogram."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table

from services.orders.views import order_header
from shared.db import UtcDateTime, metadata

sla_orders = Table(
    "sla_orders",
    metadata,
    Column("order_id", String(36), primary_key=True),
    *order_header(),  # the order view's header, kept here too so that a dashboard query reads one table
    Column("at_risk_at", UtcDateTime, nullable=True),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("answer_seconds", Float, nullable=True),
    # When the clock stopped (a pending contest, a full answer): the remaining time shown is frozen there.
    Column("clock_stopped_at", UtcDateTime, nullable=True),
    Column("status", String(24), nullable=False),
    # When the status changes by time alone (on_track → at_risk → breached); NULL when nothing is pending.
    Column("next_change_at", UtcDateTime, nullable=True),
    Index(None, "next_change_at"),
    Index(None, "status", "deadline", "order_id"),
    Index(None, "issued_at"),
)

# Exact counts per (dimension, key, status), kept by deltas in the projection's transaction: a summary reads a
# few rows whatever the number of orders. Dimensions: all, platform, category, authority, and authority|platform,
# authority|category for an issuer's own view.
sla_counts = Table(
    "sla_counts",
    metadata,
    Column("dimension", String(32), primary_key=True),
    Column("key", String(120), primary_key=True),
    Column("status", String(24), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# Time from notification to a full answer, in logarithmic buckets 10% wide (`projection.BUCKET_GROWTH`), per (dimension, key).
sla_answer_histogram = Table(
    "sla_answer_histogram",
    metadata,
    Column("dimension", String(32), primary_key=True),
    Column("key", String(120), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# One row per (order, level), written in the same transaction as the `order.escalated` event: however many
# sweepers run, a second escalation of one level cannot be recorded (the aggregate refuses it too).
escalations = Table(
    "escalations",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("escalated_at", UtcDateTime, nullable=False),
    Column("event_id", String(36), nullable=False),
)
