"""`Database.read()`: reads see what has committed, and never hold a transaction (PostgreSQL: not even while open).

On PostgreSQL a read runs in autocommit (no BEGIN, no ROLLBACK: one round trip per statement); on SQLite it is a
read transaction, rolled back when the block ends.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, create_engine, event, select, text

from services.orders.views import idempotency_keys
from shared.db import Database, make_engine
from tests.builders import T0


def _key(n: int) -> dict[str, Any]:
    return {"authority_id": "mci", "key": f"k-{n}", "request_hash": "h", "order_id": f"o-{n}", "created_at": T0}


def _keys(conn: Connection) -> list[str]:
    return [r.key for r in conn.execute(select(idempotency_keys.c.key).order_by(idempotency_keys.c.key))]


def _in_transaction(dbapi_connection: Any) -> bool:
    if isinstance(dbapi_connection, psycopg.Connection):
        return dbapi_connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    return bool(dbapi_connection.in_transaction)  # sqlite3


def test_a_read_sees_every_commit_before_it(db: Database) -> None:
    with db.read() as conn:
        assert _keys(conn) == []
    for n in range(3):
        with db.transaction() as conn:
            conn.execute(idempotency_keys.insert(), _key(n))
        with db.read() as conn:  # the pool hands back a connection that read before: it sees the new row
            assert _keys(conn) == [f"k-{i}" for i in range(n + 1)]


def test_a_read_never_sees_a_rolled_back_write(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute(idempotency_keys.insert(), _key(1))
        raise RuntimeError("refused")
    with db.read() as conn:
        assert _keys(conn) == []


def test_no_transaction_is_left_open_after_a_read(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(idempotency_keys.insert(), _key(1))
    with db.read() as conn:
        assert _keys(conn) == ["k-1"]
        raw = conn.connection.dbapi_connection
    assert raw is not None and not _in_transaction(raw)
    with db.transaction() as conn:  # and the next transaction on it is a fresh one, which commits
        conn.execute(idempotency_keys.insert(), _key(2))
    with db.read() as conn:
        assert _keys(conn) == ["k-1", "k-2"]


@pytest.mark.postgres
def test_a_postgresql_read_sends_no_begin_and_holds_no_transaction(pg_db: Database) -> None:
    sent: list[str] = []
    event.listen(pg_db.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    # Another session's view of the reader's backend: "idle", never "idle in transaction", between its statements.
    watcher = create_engine(pg_db.engine.url, isolation_level="AUTOCOMMIT")
    try:
        with pg_db.read() as conn, watcher.connect() as other:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert not _in_transaction(conn.connection.dbapi_connection)
            state, xmin = other.execute(
                text("SELECT state, backend_xmin FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).one()
            assert (state, xmin) == ("idle", None)  # no snapshot held: VACUUM is never held back by a reader
            assert _keys(conn) == []
        assert not any(s.strip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT")) for s in sent)
    finally:
        watcher.dispose()


@pytest.mark.postgres
def test_a_postgresql_read_leaves_the_pooled_connection_transactional(pg_db: Database) -> None:
    """Autocommit is the read's alone: the transaction that gets the same connection next still rolls back whole."""
    engine = make_engine(str(pg_db.engine.url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
    db = Database(engine)
    try:
        with db.read() as conn:
            _keys(conn)
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute(idempotency_keys.insert(), _key(1))
            assert _in_transaction(conn.connection.dbapi_connection)
            raise RuntimeError("refused")
        with db.read() as conn:
            assert _keys(conn) == []
    finally:
        engine.dispose()
