"""Least-privilege PostgreSQL roles: an owner for migrations, the service's app role, a read-only role.

Revision ID: 0011
Revises: 0010_secrets_at_rest
"""

from __future__ import annotations

from alembic import op

from shared import roles

revision = "0011"
down_revision = "0010_secrets_at_rest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    roles.apply(op.get_bind())  # a no-op on SQLite; `takedown migrate` applies it again after every migration


def downgrade() -> None:
    pass  # the roles are the cluster's and may serve other databases: dropping them is an operator's decision
