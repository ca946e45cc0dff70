"""Migrations reach head on a fresh database, and the models and the migrations describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

import services.notifier.tables
import services.orders.views
import services.registry.tables  # noqa: F401
import shared.auth
import shared.eventstore.tables  # noqa: F401
from shared.db import metadata
from shared.migrate import current_revision, head_revision


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
