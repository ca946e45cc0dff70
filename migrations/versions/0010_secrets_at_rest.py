"""Webhook secrets at rest are sealed: `platform_secrets` columns widen to hold the sealed form

A sealed secret (`sealed:v1:<key id>:<base64url nonce+ciphertext>`, services/registry/kek.py) is about 130
characters. The rows are not encrypted here: a migration does not hold the key-encryption key (it lives outside the
database, with the processes that use it). Rows without the `sealed:v1:` prefix are read as plaintext (format 0)
and sealed at the start of every process that holds the KEK, or by `takedown secrets seal`.

Revision ID: 0010_secrets_at_rest
Revises: 0009_key_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_secrets_at_rest"
down_revision = "0009_key_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("platform_secrets") as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=100), type_=sa.String(length=255))
        batch_op.alter_column("previous_secret", existing_type=sa.String(length=100), type_=sa.String(length=255))


def downgrade() -> None:
    # Only plaintext secrets fit the old width: open them first (not possible here, without the KEK).
    with op.batch_alter_table("platform_secrets") as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=255), type_=sa.String(length=100))
        batch_op.alter_column("previous_secret", existing_type=sa.String(length=255), type_=sa.String(length=100))
