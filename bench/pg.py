"""What every bench needs of PostgreSQL: the server's URL, scratch databases it creates and drops, the messages of
its writer processes, its own output."""

from __future__ import annotations

import json
import os
import queue
import time
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


def create_migrated(name: str) -> None:
    """A fresh database that the migrations bring to head: the template a bench's runs copy."""
    from shared.db import make_engine  # here, not at the top: a bench's parent process stays light
    from shared.migrate import upgrade

    create_db(name)
    engine = make_engine(sa_url(name))
    upgrade(engine)
    engine.dispose()


def drop_db(name: str) -> None:
    """Drop a scratch database, whoever is still connected."""
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def say(line: str = "") -> None:
    """Print a line of the bench's report at once (benches run for minutes)."""
    print(line, flush=True)


def collect(q: Any, procs: list[Any], what: str, timeout_s: float) -> list[tuple[Any, ...]]:
    """One message from every writer process; fails fast if a writer reports an error or dies without a word."""
    got: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < len(procs):
        try:
            msg = q.get(timeout=0.2)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{what}: writer exited with {dead} or timed out") from None
            continue
        if msg[0] == "error":
            raise RuntimeError(f"{what} writer {msg[1]} failed:\n{msg[2]}")
        got.append(msg)
    return got


def report(bench: str, figures: dict[str, Any], targets: dict[str, str], met: bool, digits: int | None = 4) -> None:
    """The bench's last line, the JSON object of shared/docs/benchmarks.md (floats rounded to `digits`)."""
    if digits is not None:
        figures = {k: round(v, digits) if isinstance(v, float) else v for k, v in figures.items()}
    say()
    say(json.dumps({"bench": bench, "figures": figures, "targets": targets, "met": bool(met)}))
