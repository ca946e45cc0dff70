"""Signed checkpoints: the signing key (kept outside the database), and checkpoints made and stored on demand.

The key is an Ed25519 seed, read from TAKEDOWN_LEDGER_KEY (base64 of the 32 bytes) if set, otherwise from the
file TAKEDOWN_LEDGER_KEY_FILE (the same base64 on one line), which is created with mode 0600 on first use. It
never enters the database: whoever can rewrite the database must still not be able to sign a new history.

Rotation (`takedown ledger rotate-key`, services/ledger/rotation.py for the statement): the new seed is written to
"<key file>.next" (0600), the old key signs the rotation statement in the same transaction that stores it, then
the old file is renamed "<key file>.retired-<from size>" (destroy it once nothing needs it) and ".next" becomes the
key file. A process that still holds the old key notices at its next checkpoint (the chain's key for that tree size
is not its own) and reads the key file again; should it crash between the commit and the renames, the key is in
".next" and is read from there. A key given in TAKEDOWN_LEDGER_KEY cannot be rotated this way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.ledger import tree
from services.ledger.errors import NoCheckpoint, SigningKeyError
from services.ledger.tables import ledger_checkpoints, ledger_head
from shared import keyfile
from shared.tlog.note import CheckpointBody, NoteSigner, sign_checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """A stored, signed checkpoint."""

    origin: str
    tree_size: int
    root: bytes
    note: str
    created_at: datetime


def load_or_create_seed(key_b64: str | None, key_file: str | Path) -> bytes:
    """The signing seed: from the base64 value if given, else from the key file (made, mode 0600, if missing)."""
    try:
        if key_b64:
            return keyfile.decode_key(key_b64, 32, "TAKEDOWN_LEDGER_KEY")
        return keyfile.read_or_create(key_file, 32, create=True)
    except ValueError as exc:
        raise SigningKeyError(f"{exc} (the ledger key is a base64 32-byte Ed25519 seed)") from exc


def lock_for_signing(conn: Connection) -> tree.TreeHead:
    """The tree head, locked until commit (PostgreSQL; SQLite's write lock is the transaction's): while a
    checkpoint is signed or the key rotated, neither the tree nor the key chain moves."""
    stmt = select(ledger_head.c.tree_size, ledger_head.c.root_hash).where(ledger_head.c.id == 1)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return tree.head(conn) if row is None else tree.TreeHead(int(row.tree_size), bytes(row.root_hash))


def make_checkpoint(
    conn: Connection, signer_for: Callable[[int], NoteSigner], origin: str, now: datetime
) -> Checkpoint:
    """Sign the current tree head with the key in force at its size and store it (or return the stored one)."""
    current = lock_for_signing(conn)
    existing = checkpoint_at(conn, current.size)
    if existing is not None:
        return existing
    note = sign_checkpoint(CheckpointBody(origin, current.size, current.root), signer_for(current.size))
    values = {"tree_size": current.size, "root_hash": current.root, "origin": origin, "note": note, "created_at": now}
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    # Two processes may sign the same size at once; the signatures are identical (Ed25519 is deterministic).
    conn.execute(insert(ledger_checkpoints).values(values).on_conflict_do_nothing(index_elements=["tree_size"]))
    stored = checkpoint_at(conn, current.size)
    assert stored is not None
    return stored


def _row(row: Any) -> Checkpoint:
    return Checkpoint(
        origin=row.origin,
        tree_size=int(row.tree_size),
        root=bytes(row.root_hash),
        note=row.note,
        created_at=row.created_at,
    )


def checkpoint_at(conn: Connection, tree_size: int) -> Checkpoint | None:
    """The stored checkpoint of one tree size, if any."""
    row = conn.execute(select(ledger_checkpoints).where(ledger_checkpoints.c.tree_size == tree_size)).first()
    return None if row is None else _row(row)


def latest(conn: Connection) -> Checkpoint:
    """The checkpoint of the largest tree size; NoCheckpoint if none was made."""
    row = conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.tree_size.desc()).limit(1)).first()
    if row is None:
        raise NoCheckpoint()
    return _row(row)


def all_checkpoints(conn: Connection) -> list[Checkpoint]:
    """Every stored checkpoint, smallest tree first."""
    return [_row(r) for r in conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.tree_size))]


def next_key_file(key_file: str | Path) -> Path:
    """Where a rotation writes the new seed before the chain names it."""
    return Path(f"{key_file}.next")


def read_seeds(key_b64: str | None, key_file: str | Path) -> list[bytes]:
    """The seeds this process may sign with: the key (made if missing), then a rotation's ".next" key if present."""
    seeds = [load_or_create_seed(key_b64, key_file)]
    staged = next_key_file(key_file)
    if key_b64 is None and staged.exists():
        try:
            seeds.append(keyfile.read_or_create(staged, 32, create=False))
        except (ValueError, FileNotFoundError) as exc:
            raise SigningKeyError(f"{staged}: {exc}") from exc
    return seeds


def stage_new_seed(key_file: str | Path) -> bytes:
    """A new seed for a rotation, in "<key file>.next" (mode 0600; an unfinished rotation's seed is reused)."""
    try:
        return keyfile.read_or_create(next_key_file(key_file), 32, create=True)
    except ValueError as exc:
        raise SigningKeyError(f"{exc} (the staged ledger key is a base64 32-byte Ed25519 seed)") from exc


def promote_staged_seed(key_file: str | Path, from_size: int) -> Path:
    """After the rotation is committed: retire the old key file and make the staged one the key file."""
    current, retired = Path(key_file), Path(f"{key_file}.retired-{from_size}")
    os.replace(current, retired)
    os.replace(next_key_file(key_file), current)
    return retired
