"""The sweep on each backend: every escalation level once and at its time, pushed to the platform and the
supervisor; on PostgreSQL, several sweeper processes escalate each order once, and an open transaction that
holds back numbering does not delay an escalation."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from standardwebhooks import Webhook

from services.bootstrap import bootstrap
from services.http.schemas.webhooks import OrderEscalatedWebhook
from services.notifier.outbox import SUPERVISOR
from services.notifier.sender import transport
from services.orders.sla_clock import DEADLINE_MISSED, NOT_NOTIFIED, REVIEW_OVERDUE, STILL_OPEN, STILL_OPEN_LONG
from services.sla.tables import escalations
from shared.clock import FrozenClock
from shared.db import Database, make_engine
from shared.settings import Settings
from tests.builders import ISSUER_PRINCIPAL, T0, order_fields, platform_fields, service_settings
from tests.notifier.receiver import Receiver, Respond
from tests.support import Api

ROOT = Path(__file__).resolve().parents[2]


def sweep(api: Api) -> None:
    api.container.sweep.run_once()


def levels(api: Api, order_id: str) -> list[tuple[int, str]]:
    """The order's recorded escalations: (level, when), in the order they were recorded."""
    found = api.call("GET", f"/v1/orders/{order_id}/events", "auditor").json()
    return [(e["data"]["level"], e["data"]["escalated_at"]) for e in found if e["type"] == "order.escalated"]


def iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat().replace("+00:00", "Z")


def at(api: Api, delta: timedelta) -> None:
    api.clock.set(T0 + delta)


def test_the_clock_moved_through_a_whole_life_fires_each_level_once_at_its_time(api: Api) -> None:
    H, S = timedelta(hours=1), timedelta(seconds=1)
    oid = api.issue().json()["id"]
    at(api, H - S)
    sweep(api)
    assert levels(api, oid) == [], "not yet an hour without notification"
    at(api, H)
    sweep(api)
    sweep(api)
    assert levels(api, oid) == [(NOT_NOTIFIED, iso(H))]
    at(api, 2 * H)
    assert api.call("GET", f"/v1/orders/{oid}", "platform_a").status_code == 200  # the inbox read notifies
    deadline = 26 * H
    for moment, expected in [
        (deadline - S, [NOT_NOTIFIED]),
        (deadline, [NOT_NOTIFIED, DEADLINE_MISSED]),
        (deadline + 24 * H - S, [NOT_NOTIFIED, DEADLINE_MISSED]),
        (deadline + 24 * H, [NOT_NOTIFIED, DEADLINE_MISSED, STILL_OPEN]),
        (deadline + 72 * H, [NOT_NOTIFIED, DEADLINE_MISSED, STILL_OPEN, STILL_OPEN_LONG]),
        (deadline + 500 * H, [NOT_NOTIFIED, DEADLINE_MISSED, STILL_OPEN, STILL_OPEN_LONG]),
    ]:
        at(api, moment)
        sweep(api)
        sweep(api)
        assert [level for level, _ in levels(api, oid)] == expected, f"at T0 + {moment}"
    assert levels(api, oid) == [
        (NOT_NOTIFIED, iso(H)),
        (DEADLINE_MISSED, iso(deadline)),
        (STILL_OPEN, iso(deadline + 24 * H)),
        (STILL_OPEN_LONG, iso(deadline + 72 * H)),
    ]
    with api.container.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(escalations)).scalar_one() == 4
    pushed = api.call("GET", f"/v1/deliveries?order_id={oid}", "admin").json()
    assert sorted(d["webhook_type"] for d in pushed).count("order.escalated") == 4, "each level pushed to the platform"


def test_an_overdue_review_escalates_on_the_issuers_side(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    api.advance(hours=2)
    r = api.call("POST", f"/v1/orders/{oid}/contest", "platform_a", json={"grounds": "not_illegal", "detail": "satire"})
    assert r.status_code == 200, r.text
    api.advance(hours=72, seconds=-1)
    sweep(api)
    assert levels(api, oid) == [], "the clock is paused while contested: nothing is due on the platform's side"
    api.advance(seconds=1)
    sweep(api)
    assert [level for level, _ in levels(api, oid)] == [REVIEW_OVERDUE]


def test_the_sweep_moves_the_sla_projection_by_time(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    api.container.sequencer.catch_up()
    api.container.projections.run_once()
    api.advance(hours=24, microseconds=1)
    sweep(api)
    rows = api.call("GET", "/v1/sla/orders", "auditor", params={"sla_status": "breached"}).json()["items"]
    assert [r["order_id"] for r in rows] == [oid]
    assert rows[0]["remaining_seconds"] < 0


def test_escalations_are_pushed_signed_to_the_supervisor(api: Api) -> None:
    secret = "whsec_" + "c3VwZXJ2aXNvci1zZWNyZXQtZm9yLXRlc3Rz"
    with Receiver() as receiver:
        receiver.script("/supervisor", Respond(200))
        settings = service_settings(api.container.settings.database_url).model_copy(
            update={"supervisor_webhook_url": receiver.url("/supervisor"), "supervisor_webhook_secret": secret}
        )
        # The receiver checks webhook-timestamp against the real time: issue two hours ago, sweep now.
        now = datetime.now(UTC).replace(microsecond=0)
        api.clock.set(now - timedelta(hours=2))
        container = bootstrap(Settings.model_validate(settings.model_dump()), clock=FrozenClock(now))
        try:
            oid = api.issue().json()["id"]
            container.sweep.run_once()

            async def push() -> int:
                async with transport(4) as pool:
                    jobs = await asyncio.to_thread(container.notifier.claim, 10)
                    await asyncio.gather(*(container.notifier.attempt(pool, j) for j in jobs))
                    return len([j for j in jobs if j.platform_id == SUPERVISOR])

            assert asyncio.run(push()) == 1
        finally:
            container.close()
        [request] = receiver.requests("/supervisor")
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "order.escalated" and payload["data"]["order"]["id"] == oid
    assert payload["data"]["order"]["escalation_levels"] == [NOT_NOTIFIED]
    events = api.call("GET", f"/v1/orders/{oid}/events", "auditor").json()
    assert [e["type"] for e in events] == ["order.issued", "order.escalated"], "the supervisor's push adds no fact"


def test_every_escalation_webhook_states_its_level_and_reason(api: Api) -> None:
    supervisor_secret = "whsec_" + "c3VwZXJ2aXNvci1zZWNyZXQtZm9yLXRlc3Rz"
    with Receiver() as receiver:
        receiver.script("/platform", Respond(200))
        receiver.script("/supervisor", Respond(200))
        r = api.call(
            "PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": receiver.url("/platform")}
        )
        assert r.status_code == 200, r.text
        platform_secret = api.call("POST", f"/v1/platforms/{api.platform_a}/secret/rotate", "admin").json()[
            "webhook_secret"
        ]
        settings = service_settings(api.container.settings.database_url).model_copy(
            update={
                "supervisor_webhook_url": receiver.url("/supervisor"),
                "supervisor_webhook_secret": supervisor_secret,
            }
        )
        # The receiver's signatures are checked against the real time: notified 25 h ago, swept now.
        now = datetime.now(UTC).replace(microsecond=0)
        api.clock.set(now - timedelta(hours=25))
        container = bootstrap(Settings.model_validate(settings.model_dump()), clock=FrozenClock(now))

        async def push(c: Any) -> None:
            async with transport(4) as pool:
                jobs = await asyncio.to_thread(c.notifier.claim, 10)
                await asyncio.gather(*(c.notifier.attempt(pool, j) for j in jobs))

        try:
            oid = api.issue().json()["id"]
            asyncio.run(push(api.container))  # order.issued answered 2xx: notified, the clock runs
            container.sweep.run_once()  # the deadline passed an hour ago: level 2
            asyncio.run(push(container))
        finally:
            container.close()
        # The order.issued push is signed 25 h ago, too old to verify now: only the escalation's is checked.
        pushed = {json.loads(q.body)["type"]: q for q in receiver.requests("/platform")}
        assert set(pushed) == {"order.issued", "order.escalated"}
        escalated = Webhook(platform_secret).verify(pushed["order.escalated"].body, pushed["order.escalated"].headers)
        [supervisor] = [Webhook(supervisor_secret).verify(q.body, q.headers) for q in receiver.requests("/supervisor")]
    expected = {"level": DEADLINE_MISSED, "reason": "the deadline passed without a full answer"}
    for payload in (escalated, supervisor):
        assert payload["type"] == "order.escalated" and payload["data"]["order"]["id"] == oid
        assert payload["data"]["escalation"] == expected
        OrderEscalatedWebhook.model_validate(payload)  # the body is the one the OpenAPI document describes
    spec = api.call("GET", "/openapi.json", None).json()
    body = spec["webhooks"]["order.escalated"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    data = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]["data"]
    assert "escalation" in spec["components"]["schemas"][data["$ref"].rsplit("/", 1)[1]]["required"]
    assert "escalation" not in json.loads(pushed["order.issued"].body)["data"]


# --------------------------------------------------------------------------------------------- PostgreSQL


def test_an_open_transaction_in_this_database_does_not_delay_an_escalation(pg_db: Database) -> None:
    url = pg_db.engine.url.render_as_string(hide_password=False)
    clock = FrozenClock(T0)
    container = bootstrap(service_settings(url), clock=clock)
    held = create_engine(url).connect()
    try:
        with container.db.transaction() as conn:
            platform, _ = container.registry.register_in(conn, platform_fields("P"), T0)
        container.sequencer.run_once()
        held.execute(text("SELECT txid_current()"))  # numbering now waits for this transaction

        document, _ = container.orders.issue(ISSUER_PRINCIPAL, order_fields(platform.id), None)
        clock.set(T0 + timedelta(hours=1))
        assert container.sequencer.run_once() == 0, "numbering is held back"
        container.sweep.run_once()
        with container.db.read() as conn:
            escalated = conn.execute(select(escalations.c.level).where(escalations.c.order_id == document["id"]))
            assert [r.level for r in escalated] == [NOT_NOTIFIED]
    finally:
        held.close()
        container.close()


SWEEPER = """
import sys
from datetime import datetime
from services.bootstrap import bootstrap
from services.http.schemas.webhooks import OrderEscalatedWebhook
from shared.clock import FrozenClock
from tests.builders import service_settings
container = bootstrap(service_settings(sys.argv[1]), clock=FrozenClock(datetime.fromisoformat(sys.argv[2])))
for _ in range(50):
    container.sweep.run_once()
container.close()
"""


def test_three_sweeper_processes_escalate_each_of_500_orders_once_per_level(pg_db: Database) -> None:
    url = pg_db.engine.url.render_as_string(hide_password=False)
    container = bootstrap(service_settings(url), clock=FrozenClock(T0))
    with container.db.transaction() as conn:
        platform, _ = container.registry.register_in(conn, platform_fields("P"), T0)
    ids = [
        container.orders.issue(ISSUER_PRINCIPAL, order_fields(platform.id, f"S-{n}"), None)[0]["id"] for n in range(500)
    ]
    container.close()
    later = (T0 + timedelta(hours=30)).isoformat()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweepers = [
        subprocess.Popen([sys.executable, "-c", SWEEPER, url, later], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=240)[1].decode() for p in sweepers]
    assert [p.returncode for p in sweepers] == [0, 0, 0], errors
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows: list[Any] = conn.execute(
                text("SELECT stream_id, data FROM events WHERE type = 'order.escalated'")
            ).all()
    finally:
        engine.dispose()
    by_order: dict[str, list[int]] = {}
    for stream_id, data in rows:
        by_order.setdefault(stream_id, []).append(int(data["level"]))
    assert sorted(by_order) == sorted(ids)
    assert all(sorted(found) == [NOT_NOTIFIED] for found in by_order.values()), "each order once, at its one due level"


def test_orders_filter_by_sla_status_as_the_sweep_moves_them(api: Api) -> None:
    fast = api.issue(issuer_reference="F-1").json()["id"]
    slow = api.issue(issuer_reference="F-2").json()["id"]
    for oid in (fast, slow):
        api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    items = api.call("GET", f"/v1/orders/{fast}", "admin").json()["items"]
    outcomes = [
        {"item_id": i["item_id"], "outcome": "removed", "actioned_at": api.clock.now().isoformat()} for i in items
    ]
    api.call("POST", f"/v1/orders/{fast}/outcomes", "platform_a", json={"outcomes": outcomes})

    def ids(sla_status: str) -> list[str]:
        # The filter reads the SLA projection (the one owner of SLA status), fed by position.
        api.container.sequencer.catch_up()
        api.container.projections.run_once()
        r = api.call("GET", "/v1/orders", "auditor", params={"sla_status": sla_status})
        assert r.status_code == 200, r.text
        return [o["id"] for o in r.json()["items"]]

    assert (ids("met"), ids("on_track"), ids("breached")) == ([fast], [slow], [])
    api.advance(hours=24, seconds=1)
    sweep(api)
    assert (ids("met"), ids("on_track"), ids("breached")) == ([fast], [], [slow])
    assert api.call("GET", "/v1/orders", "auditor", params={"sla_status": "soon"}).status_code == 422
