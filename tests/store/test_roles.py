"""Least privilege on PostgreSQL: the service's role can run the whole service and cannot switch the protection off."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import services.bootstrap  # noqa: F401 - every table's module, so that metadata is complete
from services.cli import cli
from services.http.app import create_app  # noqa: F401 - the HTTP edge's tables too
from shared import roles
from shared.db import metadata
from shared.projections import rebuild
from tests.builders import T0
from tests.conftest import drop_pg, fresh_pg_url
from tests.support import make_api


def as_role(url: str, role: str) -> str:
    """The same database, connecting as another role (trust authentication on the test server)."""
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    url = fresh_pg_url(pg_template)
    yield url
    drop_pg(url)


def test_every_table_has_its_privileges_in_the_one_table() -> None:
    tables = set(metadata.tables) | {"alembic_version"}
    assert tables - set(roles.APP_PRIVILEGES) == set(), "a table the service's role has no grant for"
    assert set(roles.APP_PRIVILEGES) - tables == set(), "a grant for a table that no longer exists"


def test_history_tables_take_no_update_or_delete() -> None:
    for table in ("events", "event_positions", "ledger_nodes", "ledger_checkpoints", "delivery_attempts"):
        assert roles.APP_PRIVILEGES[table] == roles.HISTORY


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'order.withdrawn' WHERE id = (SELECT min(id) FROM events)",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE event_positions SET position = position + 1",
        "DELETE FROM ledger_nodes",
        "UPDATE ledger_checkpoints SET note = ''",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TRIGGER events_append_only ON events",
        "SET session_replication_role = replica",
        "ALTER TABLE events OWNER TO takedown_app",
        "ALTER ROLE takedown_app SUPERUSER",
        "CREATE TRIGGER sneak BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_history_change()",
    ],
)
def test_the_app_role_cannot_change_history_or_its_protection(pg_url: str, statement: str) -> None:
    with make_api(pg_url) as api:  # some history to aim at: two platforms registered
        assert api.issue().status_code == 201
    with (
        psycopg.connect(libpq(as_role(pg_url, roles.APP))) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_the_read_role_only_reads(pg_url: str) -> None:
    with make_api(pg_url) as api:
        assert api.issue().status_code == 201
    with psycopg.connect(libpq(as_role(pg_url, roles.READ))) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO idempotency_keys VALUES ('a', 'k', 'h', 'o', now())")


def test_the_whole_service_runs_as_the_app_role(pg_url: str) -> None:
    """Issue, notify, answer, sweep, feed the ledger, checkpoint and rebuild every projection: nothing needs more."""
    with make_api(as_role(pg_url, roles.APP)) as api:
        c = api.container
        with c.db.read() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == roles.APP
        order = api.issue().json()
        assert api.call("POST", f"/v1/orders/{order['id']}/acknowledge", "platform_a").status_code == 200
        item = order["items"][0]["item_id"]
        answered = api.call(
            "POST",
            f"/v1/orders/{order['id']}/outcomes",
            "platform_a",
            json={"outcomes": [{"item_id": item, "outcome": "removed", "actioned_at": T0.isoformat()}]},
        )
        assert answered.status_code == 200, answered.text
        second = api.issue(issuer_reference="second").json()
        api.advance(hours=30)
        c.sequencer.catch_up()
        c.projections.run_once()
        assert c.sweep.run_once() >= 1  # the second order, never answered, escalates
        c.sequencer.catch_up()
        assert c.ledger.feed() > 0
        checkpoint = c.ledger.checkpoint()
        assert checkpoint.tree_size > 0
        for projection in c.rebuildable():
            assert rebuild(c.db, c.store, projection) > 0
        assert api.call("GET", f"/v1/orders/{second['id']}", "issuer").status_code == 200


def test_migrate_runs_as_the_owner_and_sets_the_roles_passwords(pg_template: str) -> None:
    """`takedown migrate` connects with the migration URL; the service's own URL (the app role) is not used."""
    url = fresh_pg_url(None)  # an empty database
    try:
        password = secrets.token_urlsafe(12) + "'quote"
        env = {
            "TAKEDOWN_DATABASE_URL": as_role(url, roles.APP),
            "TAKEDOWN_MIGRATE_DATABASE_URL": url,
            "TAKEDOWN_APP_ROLE_PASSWORD": password,
        }
        result = CliRunner().invoke(cli, ["migrate"], env=env)
        assert result.exit_code == 0, result.output
        with psycopg.connect(libpq(url)) as conn:
            owners = {r[0] for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
            assert owners == {roles.OWNER}
            granted = conn.execute("SELECT has_table_privilege('takedown_app', 'events', 'UPDATE')").fetchone()
            assert granted == (False,)
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'takedown_app'").fetchone()
            assert stored is not None and stored[0] is not None and password not in stored[0]  # hashed by the server
    finally:
        drop_pg(url)
