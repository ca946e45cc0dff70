"""The witness's own small database: the latest cosigned checkpoint per log, and every refused signed submission.

This is not the service's database and has no alembic migrations: a witness runs on its own (a platform's or an
NGO's host, SQLite by default), so its two tables have their own MetaData and are created at start-up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.witness.domain import Latest
from shared.db import UtcDateTime

metadata = MetaData()

latest_checkpoints = Table(
    "witness_latest",
    metadata,
    Column("origin", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

refusals = Table(
    "witness_refusals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("origin", Text, nullable=False, index=True),
    Column("code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("old_size", BigInteger, nullable=False),
    Column("note", Text, nullable=False),
    Column("proof", Text, nullable=False),  # the submitted proof lines, base64, one per line
    Column("latest_note", Text, nullable=True),  # the cosigned checkpoint it contradicted (None: none yet)
    # The same request sent again is one row, not one per retry.
    Column("digest", LargeBinary, nullable=False, unique=True),
)


@dataclass(frozen=True)
class Refusal:
    """One refused submission as recorded."""

    id: int
    at: datetime
    origin: str
    code: str
    reason: str
    old_size: int
    note: str
    proof: list[str]
    latest_note: str | None


def create(engine: Engine) -> None:
    """Create the witness's tables if they are missing."""
    metadata.create_all(engine)


def load_latest(conn: Connection, origin: str) -> Latest | None:
    """The latest cosigned checkpoint of a log, its row locked until the transaction ends (PostgreSQL).

    On SQLite the transaction began IMMEDIATE (shared.db.make_engine): it already holds the write lock.
    """
    query = select(latest_checkpoints.c.size, latest_checkpoints.c.root, latest_checkpoints.c.note).where(
        latest_checkpoints.c.origin == origin
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else Latest(int(row.size), bytes(row.root), str(row.note))


def save_latest(conn: Connection, origin: str, previous: Latest | None, new: Latest, at: datetime) -> bool:
    """Replace `previous` by `new` as the log's latest; False if another writer changed it first (nothing written).

    A compare-and-swap on the size and root the decision was made against, besides the lock: whatever the backend's
    isolation, a stale decision can never overwrite a newer state.
    """
    values = {"size": new.size, "root": new.root, "note": new.note, "updated_at": at}
    if previous is None:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = dialect_insert(latest_checkpoints).values(origin=origin, **values).on_conflict_do_nothing()
        # RETURNING, not rowcount: psycopg reports no count for an INSERT ... ON CONFLICT through SQLAlchemy.
        return conn.execute(statement.returning(latest_checkpoints.c.origin)).first() is not None
    c = latest_checkpoints.c
    changed = conn.execute(
        update(latest_checkpoints)
        .where(c.origin == origin, c.size == previous.size, c.root == previous.root)
        .values(**values)
        .returning(c.origin)
    )
    return changed.first() is not None


def record_refusal(
    conn: Connection,
    *,
    at: datetime,
    origin: str,
    code: str,
    reason: str,
    old_size: int,
    note: str,
    proof: list[str],
    latest_note: str | None,
) -> None:
    """Keep a refused submission (once per distinct request and verdict)."""
    proof_text = "".join(f"{line}\n" for line in proof)
    digest = hashlib.sha256(f"{code}\n{old_size}\n{proof_text}\n{note}".encode()).digest()
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    row = {
        "at": at,
        "origin": origin,
        "code": code,
        "reason": reason,
        "old_size": old_size,
        "note": note,
        "proof": proof_text,
        "latest_note": latest_note,
        "digest": digest,
    }
    conn.execute(dialect_insert(refusals).values(**row).on_conflict_do_nothing(index_elements=["digest"]))


def list_refusals(conn: Connection, *, origin: str | None, after: int, limit: int) -> list[Refusal]:
    """Refusals in the order they were recorded, after the id `after`, of one log or all."""
    query = select(refusals).where(refusals.c.id > after).order_by(refusals.c.id).limit(limit)
    if origin is not None:
        query = query.where(refusals.c.origin == origin)
    return [
        Refusal(
            id=row.id,
            at=row.at,
            origin=row.origin,
            code=row.code,
            reason=row.reason,
            old_size=row.old_size,
            note=row.note,
            proof=row.proof.splitlines(),
            latest_note=row.latest_note,
        )
        for row in conn.execute(query)
    ]
