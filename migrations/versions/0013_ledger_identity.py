"""ledger identity, key chain and leaf formats: the origin and key name stored once, key rotation, leaf format 2

`ledger_identity` and the first row of `ledger_keys` are written by the service on first use (it knows the
origin and holds the key; a migration does neither). Format 2 leaves (with meta and seal) start at the tree size
found here: the leaves fed before keep format 1. Stop the feeders of the previous release before migrating, as
for any migration: a feeder that does not know format 2 would otherwise append format 1 leaves after the switch,
which `takedown ledger verify` then reports.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_identity",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_ledger_identity_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_identity")),
    )
    op.create_table(
        "ledger_keys",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("verifier_key", sa.Text(), nullable=False),
        sa.Column("from_size", sa.BigInteger(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_ledger_keys")),
    )
    op.create_table(
        "ledger_leaf_formats",
        sa.Column("format", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("from_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("format", name=op.f("pk_ledger_leaf_formats")),
    )
    op.execute("INSERT INTO ledger_leaf_formats (format, from_size) SELECT 2, tree_size FROM ledger_head WHERE id = 1")


def downgrade() -> None:
    op.drop_table("ledger_leaf_formats")
    op.drop_table("ledger_keys")
    op.drop_table("ledger_identity")
