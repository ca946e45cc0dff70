"""The key service: make, list, revoke and rotate API keys, and check a key on the request path.

How long a revocation takes: at once in the process that made it (its cache forgets the key when the revoking
transaction commits), and at most `auth_cache_s` (the KeyCache expiry) in every other process. An expiry counts at
once everywhere, because every cached entry ends at its key's `expires_at`.

`last_used_at` is written only when a key is checked against the table (a cache miss, at most once per
`auth_cache_s` per key per process) and the stored value is older than `last_used_every`, with that condition in the
UPDATE itself, so that all processes together write it at most once per key per interval; a request served from
the cache writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from services.keys.errors import KeyNotActive, KeyNotFound, KeyRefused
from shared.auth import (
    ROLES,
    KeyCache,
    Principal,
    Role,
    api_keys,
    create_key,
    find_valid,
    record_use,
    revoke_key,
    usable,
)
from shared.clock import Clock
from shared.db import Database, StoreError, after_commit

log = logging.getLogger("takedown.keys")

KeyStatus = Literal["active", "revoked", "expired"]
KEY_STATUSES: tuple[KeyStatus, ...] = ("active", "revoked", "expired")


@dataclass(frozen=True)
class KeyRecord:
    """A key as the table knows it: everything but its plaintext, which is never stored (only its hash)."""

    id: str
    role: Role
    authority_id: str | None
    authority_name: str | None
    platform_id: str | None
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None
    status: KeyStatus


def status_of(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> KeyStatus:
    """A key's status at `now` (revoked wins over expired: it was a decision)."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def _record(row: Any, now: datetime) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        role=row.role,
        authority_id=row.authority_id,
        authority_name=row.authority_name,
        platform_id=row.platform_id,
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        rotated_from=row.rotated_from,
        status=status_of(row.revoked_at, row.expires_at, now),
    )


def _find(conn: Connection, key_id: str, now: datetime, lock: bool = False) -> KeyRecord:
    query = select(api_keys).where(api_keys.c.id == key_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise KeyNotFound()
    return _record(row, now)


class Keys:
    """API keys: their lifecycle, and the check of a key on every request (through this process's cache)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        cache: KeyCache,
        last_used_every: timedelta,
        platform_exists: Callable[[Connection, str], bool],
    ) -> None:
        self.db, self.clock, self.cache = db, clock, cache
        self.last_used_every = last_used_every
        self._platform_exists = platform_exists

    # ------------------------------------------------------------------------------------------ the request path

    def authenticate(self, plaintext: str) -> Principal | None:
        """The caller a key names if it is usable now (from the cache when fresh), else None."""
        return self.cache.principal(plaintext, self._load)

    def cached(self, plaintext: str) -> Principal | None:
        """The caller a key names if this process's cache holds it fresh, else None (then `authenticate`)."""
        return self.cache.fresh(plaintext)

    def _load(self, plaintext: str) -> Principal | None:
        now = self.clock.now()
        with self.db.read() as conn:
            found = find_valid(conn, plaintext, now)
        if found is None:
            return None
        if found.last_used_at is None or now - found.last_used_at >= self.last_used_every:
            self._record_use(found.principal.key_id, now)
        return found.principal

    def _record_use(self, key_id: str, now: datetime) -> None:
        try:
            with self.db.transaction() as conn:
                record_use(conn, key_id, now, self.last_used_every)
        except StoreError as exc:
            # A busy database must not refuse a valid key; the next check from the table tries again.
            log.warning("could not record the use of key %s: %s", key_id, type(exc).__name__)

    def valid(self, plaintext: str) -> Principal | None:
        """The key's principal if it is usable now, read from the table (no cache, no record of use)."""
        with self.db.read() as conn:
            found = find_valid(conn, plaintext, self.clock.now())
        return found.principal if found is not None else None

    # ------------------------------------------------------------------------------------------ the lifecycle

    def create(
        self,
        role: str,
        *,
        actor: str,
        authority_id: str | None = None,
        authority_name: str | None = None,
        platform_id: str | None = None,
        label: str | None = None,
        expires_in: timedelta | None = None,
    ) -> tuple[str, KeyRecord]:
        """Make a key; return its plaintext (shown this once; only its hash is stored) and its record."""
        with self.db.transaction() as conn:
            plaintext, made = self.create_in(
                conn,
                role,
                authority_id=authority_id,
                authority_name=authority_name,
                platform_id=platform_id,
                label=label,
                expires_in=expires_in,
            )
        log.info("API key %s made (%s) by %s", made.id, made.role, actor)
        return plaintext, made

    def create_in(
        self,
        conn: Connection,
        role: str,
        *,
        authority_id: str | None = None,
        authority_name: str | None = None,
        platform_id: str | None = None,
        label: str | None = None,
        expires_in: timedelta | None = None,
        rotated_from: str | None = None,
    ) -> tuple[str, KeyRecord]:
        """`create` in the caller's transaction."""
        known: Role | None = next((r for r in ROLES if r == role), None)
        if known is None:
            raise KeyRefused(f"role must be one of {', '.join(ROLES)}")
        if known == "issuer" and not authority_id:
            raise KeyRefused("an issuer key needs an authority")
        if known == "platform" and not (platform_id and self._platform_exists(conn, platform_id)):
            raise KeyRefused("a platform key needs a registered platform")
        if expires_in is not None and expires_in <= timedelta(0):
            raise KeyRefused("a key's lifetime must be positive")
        now = self.clock.now()
        plaintext, principal = create_key(
            conn,
            known,
            now,
            authority_id=authority_id,
            authority_name=authority_name,
            platform_id=platform_id,
            label=label,
            expires_at=now + expires_in if expires_in is not None else None,
            rotated_from=rotated_from,
        )
        return plaintext, _find(conn, principal.key_id, now)

    def list(self, status: KeyStatus | None = None, role: Role | None = None) -> list[KeyRecord]:
        """Every key (or those of this status and role), newest first; never a plaintext or a hash."""
        now = self.clock.now()
        query = select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
        if role is not None:
            query = query.where(api_keys.c.role == role)
        if status == "active":
            query = query.where(usable(now))
        elif status == "revoked":
            query = query.where(api_keys.c.revoked_at.is_not(None))
        elif status == "expired":
            query = query.where(api_keys.c.revoked_at.is_(None), api_keys.c.expires_at <= now)
        with self.db.read() as conn:
            return [_record(row, now) for row in conn.execute(query)]

    def get(self, key_id: str) -> KeyRecord:
        """One key's record (KeyNotFound if there is none)."""
        with self.db.read() as conn:
            return _find(conn, key_id, self.clock.now())

    def revoke(self, key_id: str, actor: str) -> KeyRecord:
        """Revoke a key: refused at once here, within `auth_cache_s` elsewhere. Revoking it again changes nothing."""
        with self.db.transaction() as conn:
            changed = self.revoke_in(conn, key_id)
            revoked = _find(conn, key_id, self.clock.now())
        if changed:
            log.info("API key %s revoked by %s", key_id, actor)
        return revoked

    def revoke_in(self, conn: Connection, key_id: str) -> bool:
        """`revoke` in the caller's transaction; this process stops accepting the key once it commits."""
        _find(conn, key_id, self.clock.now())
        return self.cache.revoke(conn, key_id, self.clock.now())

    def rotate(
        self,
        key_id: str,
        actor: str,
        expires_in: timedelta | None = None,
        overlap: timedelta = timedelta(0),
    ) -> tuple[str, KeyRecord]:
        """A new key with the old one's role, tenant and label (and lifetime, unless `expires_in`); the old key is
        revoked at once, or with an `overlap` expires that much later, so that its holder can switch without a gap.
        """
        if overlap < timedelta(0):
            raise KeyRefused("the overlap cannot be negative")
        now = self.clock.now()
        with self.db.transaction() as conn:
            old = _find(conn, key_id, now, lock=True)  # two rotations of one key: the second waits, then is refused
            if old.status != "active":
                raise KeyNotActive(f"the key is {old.status}: make a new one instead")
            if expires_in is None and old.expires_at is not None:
                expires_in = old.expires_at - old.created_at
            plaintext, made = self.create_in(
                conn,
                old.role,
                authority_id=old.authority_id,
                authority_name=old.authority_name,
                platform_id=old.platform_id,
                label=old.label,
                expires_in=expires_in,
                rotated_from=old.id,
            )
            if overlap == timedelta(0):
                revoke_key(conn, old.id, now)
            else:
                until = now + overlap if old.expires_at is None else min(old.expires_at, now + overlap)
                conn.execute(update(api_keys).where(api_keys.c.id == old.id).values(expires_at=until))
            after_commit(conn, lambda: self.cache.forget(old.id))  # its cached entry knows the old expiry
        log.info("API key %s rotated to %s by %s", old.id, made.id, actor)
        return plaintext, made
