"""Schema migrations (alembic) run from code: `takedown migrate`, the tests and the embedded start-up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from shared import roles

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An alembic Config bound to this engine's URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head", role_passwords: Mapping[str, str] | None = None) -> None:
    """Bring the database to a revision (head by default), then apply the roles' grants (`shared.roles`)."""
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        roles.apply(conn, role_passwords)  # again after every migration: a table added since is granted too


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None if never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
