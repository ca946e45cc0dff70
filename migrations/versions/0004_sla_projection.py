"""SLA projection: per-order SLA rows, exact counts per status and group, answer-time histogram, tracking positions

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_positions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_positions")),
    )
    op.create_table(
        "sla_orders",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("authority_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at_risk_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_seconds", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("next_change_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_sla_orders")),
    )
    with op.batch_alter_table("sla_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_orders_next_change_at"), ["next_change_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sla_orders_status_deadline_order_id"), ["status", "deadline", "order_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sla_orders_issued_at"), ["issued_at"], unique=False)
    op.create_table(
        "sla_counts",
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "key", "status", name=op.f("pk_sla_counts")),
    )
    op.create_table(
        "sla_answer_histogram",
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "key", "bucket", name=op.f("pk_sla_answer_histogram")),
    )


def downgrade() -> None:
    op.drop_table("sla_answer_histogram")
    op.drop_table("sla_counts")
    with op.batch_alter_table("sla_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_orders_issued_at"))
        batch_op.drop_index(batch_op.f("ix_sla_orders_status_deadline_order_id"))
        batch_op.drop_index(batch_op.f("ix_sla_orders_next_change_at"))
    op.drop_table("sla_orders")
    op.drop_table("projection_positions")
