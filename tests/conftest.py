"""Test fixtures: every store-level test runs on SQLite and on PostgreSQL (never skipped silently)."""

from __future__ import annotations

import functools
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from services.notifier.sender import transport
from shared.db import Database, make_engine
from shared.migrate import upgrade
from tests.support import Api, make_api

PG_ADMIN_URL = os.environ.get("TAKEDOWN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@functools.cache
def _admin_engine() -> Engine:
    """One engine on the server's admin database for the session (the tests and the dropper keep a connection each)."""
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=2)


def _admin(sql: str, **params: str) -> None:
    """Run one statement on the server's admin database, outside a transaction (CREATE/DROP DATABASE)."""
    with _admin_engine().connect() as conn:
        conn.execute(text(sql), params)


@pytest.fixture(autouse=True)
def _writer_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every container built in a test keeps its writer key in the test's own folder (never ./writer.key)."""
    path = tmp_path / "writer.key"
    monkeypatch.setenv("TAKEDOWN_WRITER_KEY_FILE", str(path))
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test copies (CREATE DATABASE ... TEMPLATE)."""
    if os.environ.get("TAKEDOWN_SKIP_PG") == "1":
        pytest.skip("TAKEDOWN_SKIP_PG=1: PostgreSQL tests explicitly switched off")
    try:
        _admin("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any connection failure is a hard failure
        pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL}: {exc}", pytrace=False)
    name = f"takedown_tpl_{os.getpid()}"
    _admin(f'DROP DATABASE IF EXISTS "{name}"')
    _admin(f'CREATE DATABASE "{name}"')
    engine = make_engine(_pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    _dropper.drain()
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_engine().dispose()


def fresh_pg_url(template: str | None) -> str:
    """Create a new database from the migrated template (or an empty one, with None) and return its URL."""
    name = f"takedown_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return _pg_url(name)


class _Dropper:
    """Drops test databases one at a time in a background thread: a drop takes a second or more on a busy server,
    and a test's teardown need not wait for it. `drain` waits for every drop and fails on any that failed."""

    def __init__(self) -> None:
        self._names: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._failures: list[str] = []

    def drop(self, name: str) -> None:
        """Queue a database to drop (whoever is still connected to it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="test-db-dropper", daemon=True)
            self._thread.start()
        self._names.put(name)

    def drain(self) -> None:
        """Wait until every queued database is dropped."""
        self._names.join()
        failures, self._failures = self._failures, []
        if failures:
            pytest.fail(f"could not drop test databases: {failures}", pytrace=False)

    def _run(self) -> None:
        while True:
            name = self._names.get()
            try:
                _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - reported by drain at the end of the session
                self._failures.append(f"{name}: {exc}")
            finally:
                self._names.task_done()


_dropper = _Dropper()


def drop_pg(url: str) -> None:
    """Drop a test database (in the background; the session waits for it before it ends)."""
    _dropper.drop(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once per session; each test gets a copy (alembic costs about a second a run)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "takedown.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection's close checkpoints the WAL into the file
    return path


def fresh_sqlite_url(template: Path, directory: Path) -> str:
    """A copy of the migrated template in `directory`, as a URL (SQLite's backup API: a consistent copy)."""
    path = directory / "takedown.db"
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL on each backend (a copy of the session's template)."""
    if request.param == "sqlite":
        yield fresh_sqlite_url(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        url = fresh_pg_url(request.getfixturevalue("pg_template"))
        yield url
        drop_pg(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, never migrated database URL on each backend, for the tests that run alembic themselves."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
    else:
        request.getfixturevalue("pg_template")  # the same reachability check and skip switch
        url = fresh_pg_url(None)
        yield url
        drop_pg(url)


@pytest.fixture
def pg_db(pg_template: str) -> Iterator[Database]:
    """A fresh migrated PostgreSQL database, for guarantees only PostgreSQL has to keep."""
    url = fresh_pg_url(pg_template)
    eng = make_engine(url)
    yield Database(eng)
    eng.dispose()
    drop_pg(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh migrated database (each backend)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Database:
    """The unit-of-work wrapper over the engine."""
    return Database(engine)


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    """The whole app over HTTP (TestClient) on each backend, frozen clock, workers off (tests drive them)."""
    with make_api(db_url) as running:
        yield running


@pytest.fixture
async def pool() -> AsyncIterator[httpx.AsyncHTTPTransport]:
    """The notifier's connection pool for one platform (what `Notifier.run` keeps per platform)."""
    async with transport(4) as connections:
        yield connections
