"""Database wiring: engines for SQLite (embedded) and PostgreSQL (production), and the one place that commits."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Table,
    TypeDecorator,
    and_,
    create_engine,
    event,
    true,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

T = TypeVar("T")

# One naming convention so that migrations and models name constraints identically on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def matching(table: Table, **wanted: object) -> ColumnElement[bool]:
    """`column == value` for every filter given (None and "" mean "any"): the list endpoints' equality filters."""
    return and_(true(), *(table.c[name] == value for name, value in wanted.items() if value))


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def compact_json(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """How JSON columns are stored: compact UTF-8, so a stored webhook payload is sent as it is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)


def server_time(engine: Engine) -> Callable[[], datetime]:
    """A reader of the database server's clock (PostgreSQL's `clock_timestamp()`, not the transaction's start)."""

    def read() -> datetime:
        with engine.connect() as conn:
            at: datetime = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
        return at.astimezone(UTC)

    return read


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and write transactions that take the lock up front."""
    url = normalise_url(url)
    kwargs.setdefault("json_serializer", compact_json)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN so that we can make it IMMEDIATE: a read that later
            # writes would otherwise deadlock-upgrade and fail with SQLITE_BUSY under concurrency.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            readonly = connection.get_execution_options().get("takedown_readonly", False)
            connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    # JSON columns decoded by orjson: the documents of a page of 50 orders took 0.5 ms with json.loads, 0.2 with it.
    # (PostgreSQL only: it has refused any JSON that orjson would, NaN among them; SQLite stores what it is given.)
    kwargs.setdefault("json_deserializer", orjson.loads)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # No pre-ping: it costs a round trip per transaction. Connections are recycled instead, and a dropped one
    # fails its transaction, which the caller's retry or the client's repeat (idempotent intake) covers.
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


# Deadlock detected, serialization failure: the other transaction went through; doing it again is right.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_AFTER_COMMIT = "takedown.after_commit"


class StoreError(Exception):
    """A database refusal in the store's own terms (the driver's error is its __cause__)."""


class UniqueViolation(StoreError):
    """A unique constraint refused a row: someone recorded the same thing first."""


class TransientError(StoreError):
    """A deadlock, a serialisation failure or a dropped connection: running the transaction again can cure it."""


def _translated(exc: DBAPIError) -> StoreError | None:
    if isinstance(exc, IntegrityError):
        return UniqueViolation(str(exc.orig))
    if exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return TransientError(str(exc.orig))
    return None


def after_commit(conn: Connection, hook: Callable[[], None]) -> None:
    """Run `hook` once the transaction `conn` belongs to has committed (never if it rolls back)."""
    hooks: list[Callable[[], None]] = conn.info.setdefault(_AFTER_COMMIT, [])
    if hook not in hooks:
        hooks.append(hook)


class WriterQueue:
    """One write transaction at a time in this process; urgent writers go before the others waiting (re-entrant)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0

    @contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        """Hold the writer's turn for the block."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
            else:
                self._urgent_waiting += urgent
                try:
                    while self._owner is not None or (not urgent and self._urgent_waiting):
                        self._cond.wait()
                finally:
                    self._urgent_waiting -= urgent
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._cond.notify_all()


class Database:
    """The engine plus the unit of work: `transaction()` is the only place where anything commits."""

    def __init__(self, engine: Engine, *, urgent: bool = False, writers: WriterQueue | None = None) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and its own lock makes the others sleep and retry in growing steps (up
        # to 100 ms each): this process's writers queue here instead, each going as soon as the one before ends.
        self._writers = writers or (WriterQueue() if engine.dialect.name == "sqlite" else None)
        self._urgent = urgent

    def urgent(self) -> Database:
        """The same database, whose write transactions go before the others waiting (SQLite; PostgreSQL: as is).

        For the notifier: its transactions are short, and behind a queue of intake writers its claims and
        records would come late and deliveries fall behind the orders they push.
        """
        return Database(self.engine, urgent=True, writers=self._writers)

    @property
    def dialect(self) -> str:
        """The backend name: 'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run a block in one transaction: commit if it returns, roll back if it raises, then run after-commit hooks.

        Driver errors that have a meaning for callers leave as `UniqueViolation` or `TransientError`.
        """
        try:
            with self._writing(), self.engine.begin() as conn:
                conn.info[_AFTER_COMMIT] = []  # a pooled connection keeps its info: start each transaction empty
                yield conn
                hooks: list[Callable[[], None]] = conn.info.pop(_AFTER_COMMIT)
        except DBAPIError as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from exc
        for hook in hooks:
            hook()

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return self._writers.turn(self._urgent) if self._writers is not None else contextlib.nullcontext()

    def run(
        self,
        work: Callable[[Connection], T],
        *,
        retry_on: tuple[type[Exception], ...] = (TransientError,),
        attempts: int = 5,
    ) -> T:
        """Run `work` in a transaction; run it again when it fails with one of `retry_on` (the last failure is raised)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except retry_on:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads: on PostgreSQL in autocommit, on SQLite in a read transaction rolled back after.

        PostgreSQL reads at READ COMMITTED, where each statement takes its own snapshot inside a transaction too:
        autocommit sees the same rows, saves the BEGIN and the ROLLBACK (a round trip each) and never leaves a
        transaction open between statements (so a write here would commit at once: reads only). SQLite is
        in-process: its read transaction costs no round trip and keeps a multi-statement read on one snapshot.
        """
        options: dict[str, Any] = {"takedown_readonly": True}
        if self.engine.dialect.name == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
        with self.engine.connect().execution_options(**options) as conn:
            try:
                yield conn
            finally:
                conn.rollback()


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass UTC-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
