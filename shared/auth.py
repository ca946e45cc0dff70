"""API keys: one role each, bound to an authority (issuers) or a platform (platforms), stored hashed, with an
optional expiry; checked through a per-process cache whose bound is the one a revocation elsewhere waits for."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Column, ColumnElement, Connection, String, Table, or_, select, update

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
    Column("expires_at", UtcDateTime, nullable=True),  # None: until revoked
    # Written at most once per key per interval (services/keys: Keys.last_used_every), never on every request.
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("rotated_from", String(36), nullable=True),  # the key a rotation replaced with this one
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's role and the tenant it speaks for."""

    key_id: str
    role: Role
    authority_id: str | None = None
    authority_name: str | None = None
    platform_id: str | None = None
    expires_at: datetime | None = None  # a cache must not trust the key past this


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
    expires_at: datetime | None = None,
    rotated_from: str | None = None,
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
            expires_at=expires_at,
            rotated_from=rotated_from,
        )
    )
    principal = Principal(
        key_id=key_id,
        role=role,
        authority_id=authority_id if role == "issuer" else None,
        authority_name=(authority_name or authority_id) if role == "issuer" else None,
        platform_id=platform_id if role == "platform" else None,
        expires_at=expires_at,
    )
    return plaintext, principal


def usable(now: datetime) -> ColumnElement[bool]:
    """The WHERE clause of the keys that may be used at `now`: not revoked, not expired."""
    return api_keys.c.revoked_at.is_(None) & or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now)


@dataclass(frozen=True)
class ValidKey:
    """A usable key's principal and when it was last recorded as used (None: never)."""

    principal: Principal
    last_used_at: datetime | None


def find_valid(conn: Connection, plaintext: str, now: datetime) -> ValidKey | None:
    """The key with this plaintext if it is usable at `now` (not revoked, not expired), else None."""
    row = conn.execute(select(api_keys).where(api_keys.c.key_hash == hash_key(plaintext), usable(now))).first()
    if row is None:
        return None
    principal = Principal(
        key_id=row.id,
        role=row.role,
        authority_id=row.authority_id,
        authority_name=row.authority_name,
        platform_id=row.platform_id,
        expires_at=row.expires_at,
    )
    return ValidKey(principal, row.last_used_at)


def authenticate(conn: Connection, plaintext: str, now: datetime) -> Principal | None:
    """The principal of a key usable at `now`, or None."""
    found = find_valid(conn, plaintext, now)
    return found.principal if found is not None else None


def record_use(conn: Connection, key_id: str, now: datetime, every: timedelta) -> bool:
    """Set the key's `last_used_at` to now unless it was set less than `every` ago (by any process); True if set.

    The condition is in the UPDATE, so that processes racing to record the same use write it once.
    """
    stale = or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= now - every)
    result = conn.execute(update(api_keys).where(api_keys.c.id == key_id, stale).values(last_used_at=now))
    return result.rowcount > 0


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
    A key's own expiry takes effect at once everywhere: no entry outlives it. Only valid keys are kept, so a new
    key works at once and unknown keys cannot fill the memory.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, clock: Clock, ttl_s: float) -> None:
        self.clock, self.ttl = clock, timedelta(seconds=ttl_s)
        self._entries: dict[str, tuple[Principal, datetime]] = {}
        self._generation = 0  # bumped by every forget: a lookup that started before one must not store its result
        self._lock = threading.Lock()

    def fresh(self, plaintext: str) -> Principal | None:
        """The key's principal if a fresh entry holds it, else None (no I/O: the event loop may call it)."""
        entry = self._entries.get(hash_key(plaintext))
        if entry is not None and self.clock.now() < entry[1]:
            return entry[0]
        return None

    def principal(self, plaintext: str, load: Callable[[str], Principal | None]) -> Principal | None:
        """The key's principal from the cache if fresh, else from `load(plaintext)` (kept if valid)."""
        cached = self.fresh(plaintext)
        if cached is not None:
            return cached
        key_hash = hash_key(plaintext)
        now = self.clock.now()
        generation = self._generation
        principal = load(plaintext)
        if principal is not None and self.ttl > timedelta(0):
            until = now + self.ttl
            if principal.expires_at is not None:
                until = min(until, principal.expires_at)
            with self._lock:
                if generation == self._generation:
                    if len(self._entries) >= self.MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key_hash] = (principal, until)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a key now (it was revoked, or its expiry changed, in this process)."""
        with self._lock:
            self._generation += 1
            self._entries = {h: e for h, e in self._entries.items() if e[0].key_id != key_id}

    def revoke(self, conn: Connection, key_id: str, now: datetime) -> bool:
        """Revoke a key in the caller's transaction; this process stops accepting it as soon as that commits."""
        revoked = revoke_key(conn, key_id, now)
        after_commit(conn, lambda: self.forget(key_id))
        return revoked
