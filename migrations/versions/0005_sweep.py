"""The sweep: the order view's next due time and SLA status (indexed), one row per escalation level of an order

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_status", sa.String(length=24), nullable=True))
        batch_op.create_index(batch_op.f("ix_orders_next_due_at"), ["next_due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_sla_status_id"), ["sla_status", "id"], unique=False)
    op.create_table(
        "escalations",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "level", name=op.f("pk_escalations")),
    )


def downgrade() -> None:
    op.drop_table("escalations")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_sla_status_id"))
        batch_op.drop_index(batch_op.f("ix_orders_next_due_at"))
        batch_op.drop_column("sla_status")
        batch_op.drop_column("next_due_at")
