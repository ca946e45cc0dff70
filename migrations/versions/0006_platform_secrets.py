"""The registry's signing secrets move to their own table; `platforms` keeps only what its events say

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_secrets",
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("platform_id", name=op.f("pk_platform_secrets")),
    )
    op.execute(
        "INSERT INTO platform_secrets (platform_id, secret, previous_secret) "
        "SELECT id, secret, previous_secret FROM platforms"
    )
    with op.batch_alter_table("platforms", schema=None) as batch_op:
        batch_op.drop_column("previous_secret")
        batch_op.drop_column("secret")


def downgrade() -> None:
    with op.batch_alter_table("platforms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("previous_secret", sa.String(length=100), nullable=True))
    op.execute(
        "UPDATE platforms SET secret = (SELECT s.secret FROM platform_secrets s WHERE s.platform_id = platforms.id), "
        "previous_secret = (SELECT s.previous_secret FROM platform_secrets s WHERE s.platform_id = platforms.id)"
    )
    with op.batch_alter_table("platforms", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=100), nullable=False)
    op.drop_table("platform_secrets")
