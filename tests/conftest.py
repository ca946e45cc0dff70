"""Test fixtures: every store-level test runs on SQLite and on PostgreSQL (never skipped silently)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
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


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test copies (CREATE DATABASE ... TEMPLATE)."""
    if os.environ.get("TAKEDOWN_SKIP_PG") == "1":
        pytest.skip("TAKEDOWN_SKIP_PG=1: PostgreSQL tests explicitly switched off")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure is a hard failure
        pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL}: {exc}", pytrace=False)
    name = f"takedown_tpl_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(_pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _admin(sql: str) -> None:
    """Run one statement on the server's admin database, outside a transaction (CREATE/DROP DATABASE)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def fresh_pg_url(template: str) -> str:
    """Create a new database from the migrated template and return its URL."""
    name = f"takedown_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return _pg_url(name)


def drop_pg(url: str) -> None:
    """Drop a test database."""
    name = url.rsplit("/", 1)[1]
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'takedown.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    else:
        url = fresh_pg_url(request.getfixturevalue("pg_template"))
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
