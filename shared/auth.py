"""API keys: one role each, bound to an authority (issuers) or a platform (platforms), stored hashed."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Column, Connection, String, Table, select

from shared.db import UtcDateTime, metadata
from shared.ids import new_id

Role = Literal["admin", "issuer", "platform", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "issuer", "platform", "auditor")
KEY_PREFIX = "tdk_"

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("authority_id", String(64), nullable=True),
    Column("authority_name", String(200), nullable=True),
    Column("platform_id", String(36), nullable=True),
    Column("label", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's role and the tenant it speaks for."""

    key_id: str
    role: Role
    authority_id: str | None = None
    authority_name: str | None = None
    platform_id: str | None = None


def hash_key(plaintext: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(
    conn: Connection,
    role: Role,
    now: datetime,
    authority_id: str | None = None,
    authority_name: str | None = None,
    platform_id: str | None = None,
    label: str | None = None,
) -> tuple[str, Principal]:
    """Store a new key and return its plaintext (shown once) and principal."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "issuer" and not authority_id:
        raise ValueError("an issuer key needs an authority")
    if role == "platform" and not platform_id:
        raise ValueError("a platform key needs a platform")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = new_id()
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            key_hash=hash_key(plaintext),
            role=role,
            authority_id=authority_id if role == "issuer" else None,
            authority_name=(authority_name or authority_id) if role == "issuer" else None,
            platform_id=platform_id if role == "platform" else None,
            label=label,
            created_at=now,
        )
    )
    principal = Principal(
        key_id=key_id,
        role=role,
        authority_id=authority_id if role == "issuer" else None,
        authority_name=(authority_name or authority_id) if role == "issuer" else None,
        platform_id=platform_id if role == "platform" else None,
    )
    return plaintext, principal


def authenticate(conn: Connection, plaintext: str) -> Principal | None:
    """The principal of a valid, unrevoked key, or None."""
    row = conn.execute(
        select(api_keys).where(api_keys.c.key_hash == hash_key(plaintext), api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    return Principal(
        key_id=row.id,
        role=row.role,
        authority_id=row.authority_id,
        authority_name=row.authority_name,
        platform_id=row.platform_id,
    )
