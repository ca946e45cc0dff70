"""The platform registry's tables: `platforms`, a projection of the platform streams, and their signing secrets."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Integer, String, Table, Text

from shared.db import UtcDateTime, metadata

# Every column is a fold of the platform's events (`services/registry/domain.py`): dropped and replayed by
# `takedown projections rebuild`, written in the command's transaction live.
platforms = Table(
    "platforms",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("monthly_users", Integer, nullable=False),
    Column("representative", JSON, nullable=False),
    Column("webhook_url", String(2048), nullable=True),
    Column("webhook_enabled", Boolean, nullable=False),
    Column("webhook_disabled_reason", Text, nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Signing keys are never events (the ledger and every history reader would see them): they are state, like the
# API keys, kept beside the projection and untouched by a rebuild (so no foreign key: a rebuild drops every
# `platforms` row first). Each is sealed with a key-encryption key held outside the database
# (`services/registry/kek.py`): write access to the database alone reveals no secret.
platform_secrets = Table(
    "platform_secrets",
    metadata,
    Column("platform_id", String(36), primary_key=True),
    Column("secret", String(255), nullable=False),
    Column("previous_secret", String(255), nullable=True),
)
