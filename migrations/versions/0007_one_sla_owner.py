"""One owner of SLA status: the order view loses `sla_status`; SLA rows gain `clock_stopped_at`

The SLA projection (`sla_orders`) is the one read model of SLA status over time; the order list's `?sla_status=`
filters on it. Its rows gain when their clock stopped (a pending contest, a full answer), which the remaining
time shown is frozen at. Existing rows cannot know it without their events, so the projection is emptied and its
position reset: the projection runner rebuilds it from the event store at start (as `takedown projections
rebuild` would).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _reset_sla_projection() -> None:
    for table in ("sla_orders", "sla_counts", "sla_answer_histogram"):
        op.execute(sa.text(f"DELETE FROM {table}"))
    op.execute(sa.text("DELETE FROM projection_positions WHERE name = 'sla'"))


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_sla_status_id"))
        batch_op.drop_column("sla_status")
    with op.batch_alter_table("sla_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clock_stopped_at", sa.DateTime(timezone=True), nullable=True))
    _reset_sla_projection()


def downgrade() -> None:
    with op.batch_alter_table("sla_orders", schema=None) as batch_op:
        batch_op.drop_column("clock_stopped_at")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        # Filled again by the next command or sweep of each order (NULL until then, as when 0005 added it).
        batch_op.add_column(sa.Column("sla_status", sa.String(length=24), nullable=True))
        batch_op.create_index(batch_op.f("ix_orders_sla_status_id"), ["sla_status", "id"], unique=False)
    _reset_sla_projection()
