"""The read side on a real PostgreSQL streaming replica: a standby made with pg_basebackup from the running server
on another port. The dashboard, /v1/sla/* and the transparency report answer from it (behind the primary while its
replay is paused), agree with the primary once it has caught up; commands and a client's own reads stay on the
primary; /readyz and the gauge show the lag."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db import Database, make_engine
from tests.conftest import PG_ADMIN_URL, _admin, _admin_engine, drop_pg, fresh_pg_url
from tests.notifier.receiver import unused_port
from tests.support import Api, make_api
from tests.transparency.seed import project

pytestmark = pytest.mark.postgres

REPLICATION = "host replication all 127.0.0.1/32 trust"


def _as_postgres(*command: str) -> list[str]:
    """Run as the postgres OS user (a server refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def _bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        pytest.fail("PostgreSQL's server binaries are not under /usr/lib/postgresql/*/bin", pytrace=False)
    return str(versions[-1] / name)


def _allow_replication() -> None:
    """The test server's pg_hba lets 127.0.0.1 in with trust, but not for replication: add that line once."""
    with _admin_engine().connect() as conn:
        hba = Path(conn.execute(text("SHOW hba_file")).scalar_one())
    if not re.search(r"^\s*host\s+replication\s+all\s+127\.0\.0\.1/32\s+trust", hba.read_text(), re.M):
        with hba.open("a") as out:
            out.write(f"\n# added by takedown's replica test: standbys on this host may stream\n{REPLICATION}\n")
        _admin("SELECT pg_reload_conf()")


@pytest.fixture
def primary_url(pg_template: str) -> Iterator[str]:
    url = fresh_pg_url(pg_template)
    yield url
    drop_pg(url)


@pytest.fixture
def replica_url(primary_url: str) -> Iterator[str]:
    """A hot standby of the whole test server, on its own port, streaming from 127.0.0.1:5432."""
    _allow_replication()
    # What a killed run left; a slot still streaming belongs to a run in another checkout, and stays.
    _admin(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE :p AND NOT active",
        p="takedown\\_replica\\_%",
    )
    primary = make_url(PG_ADMIN_URL)
    port = unused_port()
    data = Path(tempfile.mkdtemp(prefix="takedown-replica-"))
    postgres = pwd.getpwnam("postgres")
    os.chown(data, postgres.pw_uid, postgres.pw_gid)
    data.chmod(0o700)
    target = data / "pgdata"
    backup = [_bin("pg_basebackup"), "-h", str(primary.host), "-p", str(primary.port or 5432), "-U", "postgres"]
    # A slot of our own, reserving WAL from now on: other tests' CREATE/DROP DATABASE force checkpoints that
    # recycled the segments a slot-less standby still needed, and once ended the copy's temporary slot.
    slot = f"takedown_replica_{port}"
    _admin("SELECT pg_create_physical_replication_slot(:slot, true)", slot=slot)
    copy = [*backup, "-D", str(target), "-R", "-X", "stream", "-S", slot, "-c", "fast"]
    ctl = [_bin("pg_ctl"), "-D", str(target), "-l", str(data / "log")]
    try:
        subprocess.run(_as_postgres(*copy), check=True)
        # Debian keeps the configuration outside the data directory: the standby gets its own, minimal one.
        (target / "postgresql.conf").write_text(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\nhot_standby = on\n"
        )
        (target / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        (target / "pg_ident.conf").write_text("")
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            os.chown(target / name, postgres.pw_uid, postgres.pw_gid)
        started = subprocess.run(_as_postgres(*ctl, "-w", "-t", "60", "start"), capture_output=True, text=True)
        log = data / "log"
        _LOGS.append(log)
        assert started.returncode == 0, (started.stderr, log.read_text() if log.exists() else "")
        yield make_url(primary_url).set(port=port).render_as_string(hide_password=False)
    finally:
        subprocess.run(_as_postgres(*ctl, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
        _drop_slots(slot)


def _drop_slots(pattern: str) -> None:
    """Drop our slots once their walsender has gone: a slot left behind would keep the server's WAL forever."""
    deadline = time.monotonic() + 10
    while True:
        try:
            _admin(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE :p",
                p=pattern,
            )
            return
        except Exception:  # "is active for PID": the stopped standby's walsender is on its way out
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _replay(replica: Database, action: str) -> None:
    with replica.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"SELECT pg_wal_replay_{action}()"))


_LOGS: list[Path] = []  # the standby's server log, shown when it falls behind for good


def _caught_up(replica: Database, primary: Database) -> None:
    """Wait until the standby has replayed everything the primary has committed so far."""
    with primary.read() as conn:
        target = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
    deadline = time.monotonic() + 30
    while True:
        with replica.read() as conn:
            done = conn.execute(text("SELECT pg_last_wal_replay_lsn() >= CAST(:t AS pg_lsn)"), {"t": target}).scalar()
        if done:
            return
        assert time.monotonic() < deadline, "the standby never caught up:\n" + _LOGS[-1].read_text()[-3000:]
        time.sleep(0.05)


MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def _read_side(api: Api) -> dict[str, Any]:
    """What the read side answers: the dashboard, the SLA summary and orders, the public report."""
    report = api.client.get("/v1/transparency/report", params=MARCH).json()
    report.pop("generated_at")
    return {
        "overview": api.call("GET", "/v1/dashboard/overview", "admin").json(),
        "summary": api.call("GET", "/v1/sla/summary", "admin").json(),
        "sla_orders": api.call("GET", "/v1/sla/orders", "admin").json(),
        "report": report,
    }


def _from_primary(api: Api) -> dict[str, Any]:
    replica, api.container.read_db = api.container.read_db, api.container.db
    try:
        return _read_side(api)
    finally:
        api.container.read_db = replica


def test_the_read_side_answers_from_a_streaming_replica(primary_url: str, replica_url: str) -> None:
    replica = Database(make_engine(replica_url))
    try:
        with replica.read() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
        with make_api(primary_url, read_database_url=replica_url, transparency_min_cell=1) as api:
            assert api.container.read_db is not api.container.db
            for n in range(2):
                assert api.issue(issuer_reference=f"REPLICA-{n}").status_code == 201
            project(api)
            _caught_up(replica, api.container.db)
            caught_up = _read_side(api)
            assert caught_up == _from_primary(api)
            assert caught_up["report"]["total"]["orders"] == 2
            assert api.client.get("/readyz").json()["read_replica"] == {"lag_seconds": 0.0, "events_behind": 0}

            _replay(replica, "pause")  # the standby receives the primary's WAL but applies none of it
            created = api.issue(issuer_reference="REPLICA-late")
            assert created.status_code == 201
            project(api)
            # The command and the client's read of what it wrote: the primary's, at once.
            order = api.call("GET", f"/v1/orders/{created.json()['id']}", "issuer")
            assert order.status_code == 200
            time.sleep(0.2)
            behind = _read_side(api)
            assert behind == caught_up, "the read side answered from the primary, not the paused replica"
            assert _from_primary(api)["report"]["total"]["orders"] == 3
            api.advance(seconds=90)  # the unreplayed order is 90 s old: the lag a dashboard reader sees
            detail = api.client.get("/readyz").json()["read_replica"]
            assert detail["lag_seconds"] == 90.0 and detail["events_behind"] >= 1
            metrics = api.client.get("/metrics").text
            gauge = re.search(r"^takedown_read_replica_lag_seconds (\S+)$", metrics, re.M)
            assert gauge is not None and float(gauge.group(1)) == 90.0

            _replay(replica, "resume")
            _caught_up(replica, api.container.db)
            again = _read_side(api)
            assert again == _from_primary(api) and again["report"]["total"]["orders"] == 3
    finally:
        replica.engine.dispose()
