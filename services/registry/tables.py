"""The platform registry's table: platforms, their representatives and webhook endpoints."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Integer, String, Table, Text

from shared.db import UtcDateTime, metadata

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
    # Signing keys must be readable to sign with; the database is the trust boundary for them.
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
