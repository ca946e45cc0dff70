"""deliveries.request_id: the HTTP request whose events asked for a delivery, for the notifier's log lines

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing, on PostgreSQL or SQLite; older deliveries have no request id.
    op.add_column("deliveries", sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("request_id")
