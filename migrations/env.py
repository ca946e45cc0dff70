"""Alembic environment: one metadata for every service's tables, online migrations only."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import services.ledger.tables
import services.notifier.tables
import services.orders.views
import services.registry.tables
import services.sla.tables  # noqa: F401
import shared.auth
import shared.eventstore.tables
import shared.projections  # noqa: F401
from shared.db import make_engine, metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
