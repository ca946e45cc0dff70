"""API keys: one role each, bound to an authority (issuers) or a platform (platforms), stored hashed."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Column, Connection, String, Table, select, update

from shared.clock import Clock
from shared.db import UtcDateTime, after_commit, metadata
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


def revoke_key(conn: Connection, key_id: str, now: datetime) -> bool:
    """Mark a key revoked in the caller's transaction; False if there is no such unrevoked key."""
    result = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return result.rowcount > 0


class KeyCache:
    """Principals by key hash for `ttl_s` seconds, so that a request does not read the key table every time.

    A revocation in this process takes effect at once: `revoke` (or `forget`) drops the key when the revoking
    transaction commits. One made by another process takes effect here once the entry expires (at most `ttl_s`).
    Only valid keys are kept, so a new key works at once and unknown keys cannot fill the memory.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, clock: Clock, ttl_s: float) -> None:
        self.clock, self.ttl = clock, timedelta(seconds=ttl_s)
        self._entries: dict[str, tuple[Principal, datetime]] = {}
        self._generation = 0  # bumped by every forget: a lookup that started before one must not store its result
        self._lock = threading.Lock()

    def principal(self, plaintext: str, load: Callable[[str], Principal | None]) -> Principal | None:
        """The key's principal from the cache if fresh, else from `load(plaintext)` (kept if valid)."""
        key_hash = hash_key(plaintext)
        now = self.clock.now()
        entry = self._entries.get(key_hash)
        if entry is not None and now < entry[1]:
            return entry[0]
        generation = self._generation
        principal = load(plaintext)
        if principal is not None and self.ttl > timedelta(0):
            with self._lock:
                if generation == self._generation:
                    if len(self._entries) >= self.MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key_hash] = (principal, now + self.ttl)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a key now (it was revoked in this process)."""
        with self._lock:
            self._generation += 1
            self._entries = {h: e for h, e in self._entries.items() if e[0].key_id != key_id}

    def revoke(self, conn: Connection, key_id: str, now: datetime) -> bool:
        """Revoke a key in the caller's transaction; this process stops accepting it as soon as that commits."""
        revoked = revoke_key(conn, key_id, now)
        after_commit(conn, lambda: self.forget(key_id))
        return revoked
