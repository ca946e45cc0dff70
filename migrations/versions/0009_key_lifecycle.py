"""API keys gain a lifecycle: an expiry, when they were last used, and the key a rotation replaced

Existing keys keep working: no expiry, never used (as far as the table knows), made directly.

Revision ID: 0009_key_lifecycle
Revises: 0008_writer_signatures
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_key_lifecycle"
down_revision = "0008_writer_signatures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rotated_from", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("rotated_from")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
