"""Migrations reach head on a fresh database, and the models and the migrations describe the same schema.

These tests run alembic themselves on an empty database of each backend: every other test gets a copy of a
template the session migrated once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

import services.notifier.tables
import services.orders.views
import services.registry.tables  # noqa: F401
import shared.auth
import shared.eventstore.tables  # noqa: F401
from shared.db import make_engine, metadata
from shared.migrate import current_revision, head_revision, upgrade


@pytest.fixture
def engine(blank_db_url: str) -> Iterator[Engine]:
    """An engine on an empty database that alembic has just brought to head (here, not from a template)."""
    eng = make_engine(blank_db_url)
    assert current_revision(eng) is None, "the database was not empty"
    upgrade(eng)
    yield eng
    eng.dispose()


def test_fresh_database_upgrades_to_head(engine: Engine) -> None:
    head = head_revision(engine)
    assert head, "alembic found no migration"
    assert current_revision(engine) == head
    tables = set(inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"
