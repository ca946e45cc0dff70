"""Many rows in one statement, for the hot paths that write a batch (the notifier records dozens of attempts at once).

PostgreSQL gets the rows as one JSON array read with `json_to_recordset`: the statement text is the same
whatever the number of rows, so the driver caches and prepares it and the server plans it once, and the one
parameter is encoded in C. (A multi-row VALUES list has a new text per row count, and psycopg re-parses texts
over 4 KB on every call; an executemany is a statement per row; psycopg's text arrays escape every value in
Python.) SQLite, embedded and single-writer, takes an executemany.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.db import compact_json

Row = Mapping[str, Any]


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Row], *, skip_conflicts_on: str | None = None) -> int:
    """Insert rows (dicts with the same keys); returns how many went in (rows that conflict on a unique
    `skip_conflicts_on` column are skipped when it is given, refused otherwise)."""
    if not rows:
        return 0
    columns = _columns(rows)
    if conn.dialect.name == "postgresql":
        sql = _pg_insert(table, columns, skip_conflicts_on)
        return int(conn.exec_driver_sql(sql, _recordset(table, rows)).rowcount)
    stmt = sqlite_insert(table)
    if skip_conflicts_on is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=[skip_conflicts_on])
    return int(conn.execute(stmt, [dict(r) for r in rows]).rowcount)


def bulk_update(
    conn: Connection,
    table: Table,
    key: str,
    rows: Sequence[Row],
    *,
    match: Mapping[str, Any] | None = None,
    keep_if_null: Collection[str] = (),
) -> set[Any]:
    """Update rows by `key` (dicts holding the key and the columns to set, the same keys in each).

    Only rows whose columns also equal `match` are changed; a None for a column named in `keep_if_null` leaves
    that column as it is. Returns the keys of the rows changed.
    """
    if not rows:
        return set()
    columns = _columns(rows)
    match = dict(match or {})
    if conn.dialect.name == "postgresql":
        sql = _pg_update(table, key, columns, tuple(sorted(match)), frozenset(keep_if_null))
        params = _recordset(table, rows) | {f"match_{c}": v for c, v in match.items()}
        return set(conn.exec_driver_sql(sql, params).scalars())
    # SQLite: the write lock is held from BEGIN, so the rows matched now are the rows the update changes.
    k = table.c[key]
    found = select(k).where(k.in_([r[key] for r in rows]), *(table.c[c] == v for c, v in match.items()))
    changed = set(conn.execute(found).scalars())
    mine = [{f"b_{c}": v for c, v in r.items()} for r in rows if r[key] in changed]
    if mine:
        binds = {c: bindparam(f"b_{c}", type_=table.c[c].type) for c in columns}
        values = {c: func.coalesce(b, table.c[c]) if c in keep_if_null else b for c, b in binds.items() if c != key}
        conn.execute(update(table).where(k == binds[key]).values(values), mine)
    return changed


def _columns(rows: Sequence[Row]) -> tuple[str, ...]:
    """The rows' columns; every row must name the same ones (PostgreSQL would read a missing one as NULL)."""
    columns = tuple(rows[0])
    if any(r.keys() != rows[0].keys() for r in rows):
        raise ValueError("bulk rows must all have the same keys")
    return columns


# ------------------------------------------------------------------------------------------- PostgreSQL


def _recordset(table: Table, rows: Sequence[Row]) -> dict[str, str]:
    """The rows as one JSON array: encoded in C, decoded by the server (no per-value work in the driver)."""
    return {"rows": compact_json(list(rows), default=_encode)}


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass UTC-aware times")
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a bulk write")


_PG = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves the dialect constructor unannotated


def _q(name: str) -> str:
    return str(_PG.identifier_preparer.quote(name))


def _source(table: Table, columns: Sequence[str]) -> str:
    """The rows as a table the statement reads from, numbered in the order given (`ord`)."""
    spec = ", ".join(f"{_q(c)} {table.c[c].type.compile(dialect=_PG)}" for c in columns)
    names = ", ".join(_q(c) for c in columns)
    return f"ROWS FROM (json_to_recordset(CAST(%(rows)s AS json)) AS ({spec})) WITH ORDINALITY AS v({names}, ord)"


@functools.cache
def _pg_insert(table: Table, columns: tuple[str, ...], skip_conflicts_on: str | None) -> str:
    names = ", ".join(_q(c) for c in columns)
    # ORDER BY ord: rows take their serial ids in the order given (the sequencer orders events by id).
    sql = f"INSERT INTO {_q(table.name)} ({names}) SELECT {names} FROM {_source(table, columns)} ORDER BY ord"
    return sql + (f" ON CONFLICT ({_q(skip_conflicts_on)}) DO NOTHING" if skip_conflicts_on else "")


@functools.cache
def _pg_update(
    table: Table, key: str, columns: tuple[str, ...], match: tuple[str, ...], keep_if_null: frozenset[str]
) -> str:
    sets = ", ".join(
        f"{_q(c)} = COALESCE(v.{_q(c)}, t.{_q(c)})" if c in keep_if_null else f"{_q(c)} = v.{_q(c)}"
        for c in columns
        if c != key
    )
    # IS NOT DISTINCT FROM: a None in `match` means NULL, as SQLAlchemy's `== None` does on SQLite.
    where = " AND ".join(
        [f"t.{_q(key)} = v.{_q(key)}", *(f"t.{_q(c)} IS NOT DISTINCT FROM %(match_{c})s" for c in match)]
    )
    return f"UPDATE {_q(table.name)} AS t SET {sets} FROM {_source(table, columns)} WHERE {where} RETURNING t.{_q(key)}"
