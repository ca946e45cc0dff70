"""The registry is event-sourced like the orders: its events are published on the bus in the command's
transaction, and `platforms` is a projection that a rebuild from the events reproduces (each backend)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, select, text
from typer.testing import CliRunner

from services.cli import cli
from services.registry.errors import RepresentativeConflict, RepresentativeRefused
from services.registry.service import PlatformsProjection
from services.registry.tables import platform_secrets, platforms
from shared.bus import Published
from shared.projections import rebuild
from tests.builders import platform_fields
from tests.support import Api

REP_OTHER = {"name": "John D.", "citizenship": "GB", "email": "john@platform.example"}
PLATFORM_TYPES = ["platform.registered", "platform.changed", "platform.secret_rotated", "platform.webhook_disabled"]


def table(api: Api, t: Any) -> list[dict[str, Any]]:
    with api.container.db.read() as conn:
        return sorted((dict(r._mapping) for r in conn.execute(select(t))), key=lambda r: str(r[t.c[0].name]))


def workload(api: Api) -> str:
    """Every kind of registry fact over HTTP and from the notifier; returns the new platform's id."""
    body = platform_fields("C", webhook_url="http://127.0.0.1:9/hook")
    created = api.call("POST", "/v1/platforms", "admin", json=body)
    assert created.status_code == 201, created.text
    pid = str(created.json()["id"])
    api.advance(minutes=5)
    patch = {"name": "C renamed", "monthly_users": 50_000, "representative": REP_OTHER}
    assert api.call("PATCH", f"/v1/platforms/{pid}", "admin", json=patch).status_code == 200
    api.advance(minutes=5)
    assert api.call("POST", f"/v1/platforms/{pid}/secret/rotate", "admin").status_code == 200
    with api.container.db.transaction() as conn:  # as the notifier does on a 410 Gone
        api.container.registry.disable_webhook(conn, pid, "410 Gone from the webhook endpoint", api.clock.now())
    api.advance(minutes=5)
    again = {"webhook_url": "http://127.0.0.1:9/hook"}
    assert api.call("PATCH", f"/v1/platforms/{pid}", "admin", json=again).status_code == 200
    grown = {"monthly_users": 310_000}
    assert api.call("PATCH", f"/v1/platforms/{api.platform_b}", "admin", json=grown).status_code == 200
    return pid


def test_every_registry_event_is_published_on_the_bus_in_the_commands_transaction(api: Api) -> None:
    seen: list[tuple[str, str, dict[str, Any], bool]] = []

    def reader(conn: Connection, message: Published) -> None:
        # In the command's transaction: the projection's row is already written there, the event beside it.
        row = conn.execute(select(platforms.c.updated_at).where(platforms.c.id == message.view["id"])).one()
        seen.append((message.event.type, message.event.stream_id, dict(message.view), conn.in_transaction()))
        assert row.updated_at == message.view["updated_at"]

    api.container.bus.subscribe(PLATFORM_TYPES, reader)
    pid = workload(api)

    mine = [(t, v) for t, s, v, _ in seen if s == f"platform-{pid}"]
    assert [t for t, _ in mine] == [
        "platform.registered",
        "platform.changed",
        "platform.secret_rotated",
        "platform.webhook_disabled",
        "platform.changed",
    ]
    assert all(in_tx for *_, in_tx in seen)
    assert mine[1][1]["name"] == "C renamed" and mine[3][1]["webhook_enabled"] is False
    assert all("secret" not in v and "whsec" not in str(v) for _, v in mine), "a published view never has a secret"
    assert [t for t, s, _, _ in seen if s == f"platform-{api.platform_b}"] == ["platform.changed"]
    # The events are the store's, with the actor, and go to the ledger like the orders' (sequenced on commit).
    api.container.sequencer.catch_up()
    stored = api.call("GET", f"/v1/platforms/{pid}/history", "auditor").json()
    assert [h["type"] for h in stored] == [t for t, _ in mine] and all(h["position"] for h in stored)


def test_a_refused_command_publishes_nothing(api: Api) -> None:
    seen: list[str] = []
    api.container.bus.subscribe(PLATFORM_TYPES, lambda conn, m: seen.append(m.event.type))
    grow = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"representative": REP_OTHER})
    assert grow.status_code == 409
    taken = api.call("POST", "/v1/platforms", "admin", json=platform_fields("A"))
    assert taken.status_code == 409
    assert seen == []


def test_the_service_tells_a_conflict_with_the_registration_from_a_refused_request(api: Api) -> None:
    registry = api.container.registry
    with pytest.raises(RepresentativeConflict):  # the users on record make the new representative unlawful
        registry.update("admin", api.platform_a, {"representative": REP_OTHER})
    with pytest.raises(RepresentativeRefused) as refused:  # both sent: the request itself breaks the rule
        registry.update("admin", api.platform_a, {"monthly_users": 150_000, "representative": REP_OTHER})
    assert not isinstance(refused.value, RepresentativeConflict)
    with pytest.raises(RepresentativeRefused) as at_registration:
        registry.register("admin", platform_fields("D", representative=REP_OTHER))
    assert not isinstance(at_registration.value, RepresentativeConflict)


def test_a_rebuild_from_the_events_reproduces_the_registry_table_and_keeps_the_secrets(api: Api) -> None:
    workload(api)
    api.container.sequencer.catch_up()
    live, secrets = table(api, platforms), table(api, platform_secrets)
    assert len(live) == 3 and len(secrets) == 3
    with api.container.db.transaction() as conn:  # damage the projection: rebuilt, it must come back
        conn.execute(platforms.update().values(monthly_users=1, webhook_url=None, webhook_enabled=False))
        conn.execute(text("DELETE FROM platforms WHERE name = 'C renamed'"))
        conn.execute(
            platforms.insert().values(
                id="stray", name="no events", monthly_users=0, representative={}, webhook_enabled=False,
                created_at=api.clock.now(), updated_at=api.clock.now(),
            )
        )  # fmt: skip
    assert table(api, platforms) != live

    applied = rebuild(api.container.db, api.container.store, PlatformsProjection(api.container.store))

    assert applied > 0
    assert table(api, platforms) == live
    assert table(api, platform_secrets) == secrets, "secrets are not events: a rebuild leaves them"


def test_the_reset_alone_rebuilds_every_row_so_no_reader_meets_a_registry_with_platforms_missing(api: Api) -> None:
    workload(api)
    live = table(api, platforms)
    # Not sequenced yet: a platform whose events have no position still keeps its row.
    with api.container.db.transaction() as conn:
        PlatformsProjection(api.container.store).reset(conn)
        during = sorted((dict(r._mapping) for r in conn.execute(select(platforms))), key=lambda r: str(r["id"]))
    assert during == live


def test_takedown_projections_rebuild_includes_the_registry(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    workload(api)
    live = table(api, platforms)
    with api.container.db.transaction() as conn:
        conn.execute(platforms.update().values(monthly_users=1))
    url = api.container.db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", url)
    monkeypatch.setenv("TAKEDOWN_ENVIRONMENT", "test")
    monkeypatch.setenv("TAKEDOWN_EMBEDDED_WORKERS", "false")

    result = CliRunner().invoke(cli, ["projections", "rebuild"])

    assert result.exit_code == 0, result.output
    assert "registry: rebuilt from" in result.output and "sla: rebuilt from" in result.output
    assert table(api, platforms) == live
