"""What every bench needs of PostgreSQL: the server's URL, scratch databases it creates and drops, its own output."""

from __future__ import annotations

import os
from typing import Any

import psycopg

ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def conninfo(dbname: str) -> dict[str, Any]:
    """psycopg connection parameters for another database of the same server."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = dbname
    return info


def sa_url(dbname: str) -> str:
    """The SQLAlchemy URL of another database of the same server."""
    c = conninfo(dbname)
    password = f":{c['password']}" if c.get("password") else ""
    return f"postgresql+psycopg://{c.get('user', 'postgres')}{password}@{c.get('host', '127.0.0.1')}:{c.get('port', 5432)}/{dbname}"


def admin(sql: str) -> None:
    """Run one statement on the server's admin database, outside a transaction."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def create_db(name: str, template: str | None = None) -> None:
    """A fresh database (dropped first if a crashed run left it), optionally copied from a template."""
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def drop_db(name: str) -> None:
    """Drop a scratch database, whoever is still connected."""
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def say(line: str = "") -> None:
    """Print a line of the bench's report at once (benches run for minutes)."""
    print(line, flush=True)
