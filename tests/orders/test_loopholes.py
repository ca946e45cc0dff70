"""The loopholes issue 14 closes, over HTTP on each backend: no platform can keep its clock from starting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.notifier.sender import transport
from services.orders.sla_clock import NOT_NOTIFIED
from tests.notifier.receiver import Receiver, Respond
from tests.support import Api


def event(api: Api, order_id: str, type_: str) -> dict:
    found = [e for e in api.call("GET", f"/v1/orders/{order_id}/events", "auditor").json() if e["type"] == type_]
    assert found, f"no {type_}"
    return dict(found[-1])


def test_a_platform_without_a_webhook_that_reads_its_inbox_is_notified_at_that_read(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.advance(minutes=40)
    inbox = api.call("GET", "/v1/orders", "platform_a").json()["items"]
    assert [o["id"] for o in inbox] == [oid]
    document = api.call("GET", f"/v1/orders/{oid}", "issuer").json()
    assert document["notified_via"] == "inbox"
    assert document["notified_at"] == (api.clock.now()).isoformat().replace("+00:00", "Z")
    assert document["sla_status"] == "on_track" and document["remaining_seconds"] == 24 * 3600
    api.advance(hours=1)
    api.container.sweep.run_once()
    assert "order.escalated" not in [e["type"] for e in api.call("GET", f"/v1/orders/{oid}/events", "auditor").json()]


def test_a_platform_whose_webhook_answers_410_escalates_as_not_notified(api: Api) -> None:
    with Receiver() as receiver:
        receiver.script("/hook", Respond(410))
        r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": receiver.url("/hook")})
        assert r.status_code == 200, r.text
        # The receiver checks nothing; the clock still runs at the real time so the notifier's lease math holds.
        api.clock.set(datetime.now(UTC).replace(microsecond=0))
        oid = api.issue().json()["id"]

        async def push() -> None:
            async with transport(4) as pool:
                jobs = await asyncio.to_thread(api.container.notifier.claim, 10)
                await asyncio.gather(*(api.container.notifier.attempt(pool, j) for j in jobs))

        asyncio.run(push())
        assert len(receiver.requests("/hook")) == 1
    platform = api.call("GET", f"/v1/platforms/{api.platform_a}", "admin").json()
    assert platform["webhook_enabled"] is False
    assert api.call("GET", f"/v1/orders/{oid}", "auditor").json()["sla_status"] == "awaiting_delivery"
    api.advance(hours=1)
    api.container.sweep.run_once()
    escalated = event(api, oid, "order.escalated")
    assert escalated["data"]["level"] == NOT_NOTIFIED
    assert "not notified" in escalated["data"]["reason"]


def test_the_registry_history_shows_the_representative_on_record_at_delivery(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.advance(minutes=30)
    notice = {"channel": "email", "address": "rep@example.kz", "evidence": "SMTP 250 queued as 4F2A1"}
    r = api.call("POST", f"/v1/orders/{oid}/notices", "admin", json=notice)
    assert r.status_code == 200, r.text
    assert api.call("POST", f"/v1/orders/{oid}/notices", "issuer", json=notice).status_code == 403
    delivered_at = event(api, oid, "order.delivered")["recorded_at"]
    api.advance(hours=2)
    new_rep = {"name": "Dana K.", "citizenship": "KZ", "email": "dana@example.kz"}
    assert (
        api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"representative": new_rep}).status_code
        == 200
    )

    delivered = event(api, oid, "order.delivered")
    assert delivered["data"]["channel"] == "email" and delivered["data"]["representative"]["name"] == "Rep"
    history = api.call("GET", f"/v1/platforms/{api.platform_a}/history", "auditor").json()
    on_record = [h for h in history if h["recorded_at"] <= delivered_at]
    later = [h for h in history if h["recorded_at"] > delivered_at]
    assert on_record[-1]["type"] == "platform.registered"
    assert on_record[-1]["data"]["representative"]["name"] == delivered["data"]["representative"]["name"]
    assert [h["data"]["changes"]["representative"]["name"] for h in later] == ["Dana K."]


def test_declines_wait_for_the_issuer_who_accepts_them_over_http(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    items = api.call("GET", f"/v1/orders/{oid}", "platform_a").json()["items"]
    at = api.clock.now().isoformat()
    outcomes = [
        {"item_id": items[0]["item_id"], "outcome": "removed", "actioned_at": at},
        {"item_id": items[1]["item_id"], "outcome": "declined", "actioned_at": at, "reason": "lawful satire"},
    ]
    r = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json={"outcomes": outcomes})
    assert r.status_code == 200 and r.json()["status"] == "declined" and r.json()["sla_status"] == "declined"
    assert api.call("POST", f"/v1/orders/{oid}/declines/accept", "platform_a", json={"reason": "ok"}).status_code == 403
    accepted = api.call("POST", f"/v1/orders/{oid}/declines/accept", "issuer", json={"reason": "accepted on review"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "closed" and accepted.json()["sla_status"] == "declined"
    again = api.call("POST", f"/v1/orders/{oid}/declines/accept", "issuer", json={"reason": "twice"})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
