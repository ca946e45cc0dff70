"""The ledger's stored identity (origin, key name), its chain of checkpoint keys and its leaf formats.

The identity is written once, on the ledger's first use, and read by every process and command from then on, so
that the origin no longer depends on the PUBLIC_BASE_URL of whoever runs the command. If checkpoints were signed
before the identity was stored (a ledger older than migration 0013), the origin is the one they name. Nothing
here commits: every function runs in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.ledger.errors import LedgerIdentityError
from services.ledger.leaf import LeafFormats
from services.ledger.rotation import KeyChain
from services.ledger.tables import ledger_checkpoints, ledger_identity, ledger_keys, ledger_leaf_formats
from shared.tlog.note import Verifier, check_key_name, parse_verifier_key


@dataclass(frozen=True)
class Identity:
    """The ledger's origin (the first line of every checkpoint) and its signing key's name."""

    origin: str
    key_name: str


@dataclass(frozen=True)
class StoredKey:
    """One key of the chain as stored: its verifier key, from which tree size it signs, and its rotation note."""

    seq: int
    verifier: Verifier
    from_size: int
    statement: str | None
    created_at: datetime


def _insert(conn: Connection):  # type: ignore[no-untyped-def]
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def read_identity(conn: Connection) -> Identity | None:
    """The stored identity, if the ledger has one yet."""
    row = conn.execute(select(ledger_identity.c.origin, ledger_identity.c.key_name)).first()
    return None if row is None else Identity(row.origin, row.key_name)


def ensure_identity(conn: Connection, proposed: str, now: datetime) -> Identity:
    """The stored identity; on first use, stored from the checkpoints already signed, else from `proposed`."""
    found = read_identity(conn)
    if found is not None:
        return found
    signed = conn.execute(
        select(ledger_checkpoints.c.origin).order_by(ledger_checkpoints.c.tree_size.desc()).limit(1)
    ).scalar()
    origin = check_key_name(str(signed) if signed is not None else proposed)
    # Two processes starting together: one row wins, both read it.
    conn.execute(
        _insert(conn)(ledger_identity)
        .values(id=1, origin=origin, key_name=origin, created_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    stored = read_identity(conn)
    if stored is None:
        raise LedgerIdentityError("the ledger identity could not be stored")
    return stored


def stored_keys(conn: Connection) -> list[StoredKey]:
    """The chain of keys as stored, first key first (the database's word: `rotation.follow` checks it)."""
    rows = conn.execute(select(ledger_keys).order_by(ledger_keys.c.seq))
    return [
        StoredKey(int(r.seq), parse_verifier_key(r.verifier_key), int(r.from_size), r.statement, r.created_at)
        for r in rows
    ]


def stored_chain(conn: Connection) -> KeyChain | None:
    """The stored keys as a chain (unchecked), or None before the first key is stored."""
    keys = stored_keys(conn)
    return KeyChain(tuple((k.from_size, k.verifier) for k in keys)) if keys else None


def add_key(
    conn: Connection, seq: int, verifier: Verifier, from_size: int, statement: str | None, now: datetime
) -> bool:
    """Store the key of this place in the chain; False if another process stored one there first."""
    result = conn.execute(
        _insert(conn)(ledger_keys)
        .values(seq=seq, verifier_key=verifier.verifier_key, from_size=from_size, statement=statement, created_at=now)
        .on_conflict_do_nothing(index_elements=["seq"])
    )
    return bool(result.rowcount)


def leaf_formats(conn: Connection) -> LeafFormats:
    """Which leaf index has which format (`ledger_leaf_formats`)."""
    rows = conn.execute(
        select(ledger_leaf_formats.c.from_size, ledger_leaf_formats.c.format).order_by(ledger_leaf_formats.c.format)
    )
    return LeafFormats(tuple((int(r.from_size), int(r.format)) for r in rows))
