"""Identifiers: UUIDv7, opaque to clients and sortable by creation time."""

from __future__ import annotations

import uuid6


def new_id() -> str:
    """Return a new time-ordered UUIDv7 as a string."""
    return str(uuid6.uuid7())
