"""The order service's notification rule, declines and SLA status, through the service and HTTP (both backends).

The notice and accept-declines commands have no routes yet: they are called on the service, as a route will.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.orders.domain import AcceptDeclines, DomainError
from shared.auth import Principal, authenticate
from tests.support import T0, Api


def principal(api: Api, who: str) -> Principal:
    with api.container.db.read() as conn:
        found = authenticate(conn, api.keys[who], api.clock.now())
    assert found is not None
    return found


def events(api: Api, order_id: str) -> list[dict[str, Any]]:
    r = api.call("GET", f"/v1/orders/{order_id}/events", "auditor")
    assert r.status_code == 200, r.text
    return list(r.json())


def types(api: Api, order_id: str) -> list[str]:
    return [e["type"] for e in events(api, order_id)]


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


REP = {"name": "Rep", "citizenship": "KZ", "email": "rep@example.kz", "phone": None}


# ------------------------------------------------------------------------------------------ notification


def test_a_notice_recorded_by_an_operator_notifies_with_its_evidence(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.advance(hours=3)
    admin = principal(api, "admin")
    document = api.container.orders.record_notice(
        admin, oid, "email", "rep@example.kz", "SMTP 250 2.0.0 queued as 4F2A1"
    )
    assert document["status"] == "delivered" and document["notified_via"] == "email"
    assert document["notified_at"] == iso(T0 + timedelta(hours=3))
    assert document["deadline"] == iso(T0 + timedelta(hours=27))
    assert document["sla_status"] == "on_track" and document["remaining_seconds"] == 24 * 3600
    notice = events(api, oid)[-1]
    assert notice["type"] == "order.delivered"
    assert notice["data"]["channel"] == "email"
    assert notice["data"]["address"] == "rep@example.kz"
    assert notice["data"]["evidence"] == "SMTP 250 2.0.0 queued as 4F2A1"
    assert notice["data"]["representative"] == REP
    # Notified once: a second notice is refused, and the platform's later read notifies nobody again.
    with pytest.raises(DomainError) as refused:
        api.container.orders.record_notice(admin, oid, "letter", "Almaty, Abay 1", "courier receipt 77")
    assert refused.value.code == "already-notified"
    assert api.call("GET", f"/v1/orders/{oid}", "platform_a").json()["notified_via"] == "email"
    assert types(api, oid) == ["order.issued", "order.delivered"]


def test_a_notice_without_evidence_is_refused_and_records_nothing(api: Api) -> None:
    oid = api.issue().json()["id"]
    with pytest.raises(DomainError) as refused:
        api.container.orders.record_notice(principal(api, "admin"), oid, "email", "rep@example.kz", " ")
    assert refused.value.code == "evidence-required"
    assert types(api, oid) == ["order.issued"]


def test_a_platform_without_a_webhook_is_notified_when_it_reads_its_order_once(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.advance(hours=5)
    # Other readers' reads stay reads.
    for who in ("issuer", "auditor", "admin"):
        seen = api.call("GET", f"/v1/orders/{oid}", who).json()
        assert seen["status"] == "issued" and seen["sla_status"] == "awaiting_delivery"
        assert seen["remaining_seconds"] is None
    assert types(api, oid) == ["order.issued"]
    read = api.call("GET", f"/v1/orders/{oid}", "platform_a")
    assert read.status_code == 200, read.text
    order = read.json()
    assert order["status"] == "delivered" and order["notified_via"] == "inbox"
    assert order["notified_at"] == iso(T0 + timedelta(hours=5))
    assert order["deadline"] == iso(T0 + timedelta(hours=29))
    assert order["sla_status"] == "on_track" and order["remaining_seconds"] == 24 * 3600
    [_, delivered] = events(api, oid)
    assert delivered["type"] == "order.delivered"
    assert delivered["data"]["channel"] == "inbox"
    assert delivered["data"]["address"] == f"api-key:{principal(api, 'platform_a').key_id}"
    assert delivered["data"]["representative"] == REP
    # Reading again, or listing, notifies no one again.
    api.advance(hours=1)
    assert api.call("GET", f"/v1/orders/{oid}", "platform_a").json()["notified_at"] == order["notified_at"]
    assert [o["id"] for o in api.call("GET", "/v1/orders", "platform_a").json()["items"]] == [oid]
    assert types(api, oid) == ["order.issued", "order.delivered"]


def test_listing_the_inbox_notifies_every_unread_order_on_the_page(api: Api) -> None:
    first = api.issue(issuer_reference="MCI-1").json()["id"]
    second = api.issue(issuer_reference="MCI-2").json()["id"]
    withdrawn = api.issue(issuer_reference="MCI-3").json()["id"]
    other = api.issue(issuer_reference="MCI-4", platform=api.platform_b).json()["id"]
    api.call("POST", f"/v1/orders/{withdrawn}/withdraw", "issuer", json={"reason": "issued in error"})
    api.advance(minutes=30)
    page = api.call("GET", "/v1/orders?limit=2", "platform_a").json()
    assert [o["id"] for o in page["items"]] == sorted([first, second, withdrawn], reverse=True)[:2]
    listed = {o["id"]: o for o in page["items"]}
    for oid, order in listed.items():
        if oid == withdrawn:
            assert order["status"] == "withdrawn" and order["notified_at"] is None
            assert types(api, oid) == ["order.issued", "order.withdrawn"]
        else:
            assert order["notified_via"] == "inbox" and order["sla_status"] == "on_track"
            assert types(api, oid) == ["order.issued", "order.delivered"]
    assert types(api, other) == ["order.issued"]  # another platform's order is not read by this one


def test_acting_on_an_unread_order_records_the_read_with_the_representative(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.advance(hours=2)
    r = api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={"note": "on it"})
    assert r.status_code == 200, r.text
    [_, delivered, acknowledged] = events(api, oid)
    assert delivered["data"]["channel"] == "inbox" and delivered["data"]["representative"] == REP
    assert acknowledged["type"] == "order.acknowledged"


def test_a_refused_action_records_no_read_either(api: Api) -> None:
    oid = api.issue().json()["id"]
    bad = {"outcomes": [{"item_id": "nope", "outcome": "removed", "actioned_at": iso(T0)}]}
    r = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=bad)
    assert r.status_code == 409 and r.json()["type"] == "/problems/unknown-item"
    assert types(api, oid) == ["order.issued"]


# --------------------------------------------------------------------------------------- outcomes, SLA


def test_a_backdated_actioned_at_is_refused(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.advance(hours=1)
    api.call("GET", f"/v1/orders/{oid}", "platform_a")  # notified at T0+1h
    api.advance(hours=1)
    body = {"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": iso(T0 + timedelta(minutes=30))}]}
    r = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body)
    assert r.status_code == 409 and r.json()["type"] == "/problems/actioned-before-notice"


def test_a_late_report_is_met_late_whatever_it_claims(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("GET", f"/v1/orders/{oid}", "platform_a")  # notified at T0: due at T0+24h
    api.advance(hours=30)
    claimed = iso(T0 + timedelta(hours=1))
    body = {
        "outcomes": [
            {"item_id": "item-1", "outcome": "removed", "actioned_at": claimed},
            {"item_id": "item-2", "outcome": "removed", "actioned_at": claimed},
        ]
    }
    closed = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body).json()
    assert closed["status"] == "closed"
    assert closed["items"][0]["outcome"]["actioned_at"] == claimed  # kept as the platform's claim
    assert closed["sla_status"] == "met_late" and closed["remaining_seconds"] == -6 * 3600


def test_sla_status_and_remaining_are_computed_when_read_not_when_stored(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("GET", f"/v1/orders/{oid}", "platform_a")  # notified at T0
    version = api.call("GET", f"/v1/orders/{oid}", "issuer").json()["version"]
    expected = [
        (timedelta(hours=18), "on_track", 6 * 3600),  # exactly a quarter left: not yet at risk
        (timedelta(hours=18, seconds=1), "at_risk", 6 * 3600 - 1),
        (timedelta(hours=24), "at_risk", 0),
        (timedelta(hours=24, seconds=1), "breached", -1),
        (timedelta(hours=30), "breached", -6 * 3600),
    ]
    for at, sla_status, remaining in expected:
        api.clock.set(T0 + at)
        got = api.call("GET", f"/v1/orders/{oid}", "issuer").json()
        assert (got["sla_status"], got["remaining_seconds"]) == (sla_status, remaining), at
        assert got["version"] == version  # nothing was written
        [listed] = api.call("GET", "/v1/orders", "auditor").json()["items"]
        assert (listed["sla_status"], listed["remaining_seconds"]) == (sla_status, remaining)


# ---------------------------------------------------------------------------------------------- declines


def decline_one(api: Api) -> str:
    oid = api.issue().json()["id"]
    api.call("GET", f"/v1/orders/{oid}", "platform_a")  # notified at T0
    api.advance(hours=2)
    body = {
        "outcomes": [
            {"item_id": "item-1", "outcome": "removed", "actioned_at": iso(api.clock.now())},
            {"item_id": "item-2", "outcome": "declined", "reason": "news reporting", "actioned_at": iso(T0)},
        ]
    }
    answered = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body).json()
    assert answered["status"] == "declined" and answered["sla_status"] == "declined"
    assert answered["review_due"] == iso(T0 + timedelta(hours=2 + 72))
    return oid


def test_accepting_declines_closes_the_order_as_declined(api: Api) -> None:
    oid = decline_one(api)
    api.advance(hours=1)
    issuer = principal(api, "issuer")
    closed = api.container.orders.act(issuer, oid, AcceptDeclines(reason="the news defence holds"))
    assert closed["status"] == "closed" and closed["sla_status"] == "declined"
    assert closed["declines_accepted_at"] == iso(T0 + timedelta(hours=3))
    assert types(api, oid)[-2:] == ["order.declines_accepted", "order.closed"]
    api.advance(hours=100)
    assert api.call("GET", f"/v1/orders/{oid}", "issuer").json()["sla_status"] == "declined"


def test_the_issuer_of_another_authority_cannot_accept(api: Api) -> None:
    from services.orders.errors import OrderNotFound

    oid = decline_one(api)
    with pytest.raises(OrderNotFound):
        api.container.orders.act(principal(api, "issuer2"), oid, AcceptDeclines(reason="x"))


def test_upholding_over_a_decline_makes_the_item_due_again_against_the_original_deadline(api: Api) -> None:
    oid = decline_one(api)
    api.advance(hours=4)  # T0+6h
    r = api.call("POST", f"/v1/orders/{oid}/uphold", "issuer", json={"reason": "the post names a child"})
    assert r.status_code == 200, r.text
    upheld = r.json()
    assert upheld["status"] == "delivered"
    assert upheld["deadline"] == iso(T0 + timedelta(hours=24))  # unchanged
    assert upheld["sla_status"] == "on_track" and upheld["remaining_seconds"] == 18 * 3600
    items = {i["item_id"]: i["outcome"] for i in upheld["items"]}
    assert items["item-1"]["outcome"] == "removed" and items["item-2"] is None
    assert events(api, oid)[-1]["data"]["items_due_again"] == ["item-2"]
    api.advance(hours=19)  # T0+25h: past the original deadline
    assert api.call("GET", f"/v1/orders/{oid}", "issuer").json()["sla_status"] == "breached"
    body = {"outcomes": [{"item_id": "item-2", "outcome": "removed", "actioned_at": iso(api.clock.now())}]}
    closed = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body).json()
    assert closed["status"] == "closed" and closed["sla_status"] == "met_late"


def test_the_escalation_policy_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from services.bootstrap import bootstrap
    from shared.settings import Settings

    monkeypatch.setenv("TAKEDOWN_SLA_STILL_OPEN_HOURS", "[6, 12]")
    settings = Settings(
        environment="test", database_url=f"sqlite:///{tmp_path / 'x.db'}", sla_notice_hours=2, sla_review_hours=8
    )
    container = bootstrap(settings)
    try:
        policy = container.policy
        assert (policy.notice_hours, policy.still_open_hours, policy.review_hours) == (2, (6, 12), 8)
        assert container.orders.policy is policy
    finally:
        container.close()


def test_a_platform_reading_the_events_of_an_unread_order_is_notified(api: Api) -> None:
    oid = api.issue().json()["id"]
    r = api.call("GET", f"/v1/orders/{oid}/events", "platform_a")
    assert r.status_code == 200, r.text
    assert [e["type"] for e in r.json()] == ["order.issued", "order.delivered"]
    assert r.json()[1]["data"]["channel"] == "inbox"
    assert types(api, oid) == ["order.issued", "order.delivered"]
