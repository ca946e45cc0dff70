"""The whole lifecycle through HTTP, idempotent intake, and tenancy (other tenants get 404)."""

from __future__ import annotations

import threading
from typing import Any

from tests.builders import T0, order_body
from tests.support import Api


def iso(api: Api) -> str:
    return api.clock.now().isoformat().replace("+00:00", "Z")


def test_issue_acknowledge_outcomes_closes_the_order(api: Api) -> None:
    r = api.issue()
    assert r.status_code == 201, r.text
    order = r.json()
    assert r.headers["location"] == f"/v1/orders/{order['id']}"
    assert order["status"] == "issued" and order["deadline"] is None
    assert [i["item_id"] for i in order["items"]] == ["item-1", "item-2"]
    assert order["authority"] == {"id": "mci", "name": "Ministry", "unit": "Department of Information Security"}

    api.advance(minutes=5)
    r = api.call("POST", f"/v1/orders/{order['id']}/acknowledge", "platform_a", json={"note": "on it"})
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["status"] == "acknowledged"
    # Acknowledging an order never pushed by webhook counts as notification through the inbox, now.
    assert acked["notified_via"] == "inbox"
    assert acked["deadline"] == "2026-03-03T09:05:00Z"

    api.advance(hours=2)
    r = api.call(
        "POST",
        f"/v1/orders/{order['id']}/outcomes",
        "platform_a",
        json={"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": iso(api)}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    r = api.call(
        "POST",
        f"/v1/orders/{order['id']}/outcomes",
        "platform_a",
        json={"outcomes": [{"item_id": "item-2", "outcome": "not_found", "actioned_at": iso(api)}]},
    )
    closed = r.json()
    assert closed["status"] == "closed"
    assert {i["item_id"]: i["outcome"]["outcome"] for i in closed["items"]} == {
        "item-1": "removed",
        "item-2": "not_found",
    }

    api.container.sequencer.catch_up()
    events = api.call("GET", f"/v1/orders/{order['id']}/events", "auditor").json()
    assert [e["type"] for e in events] == [
        "order.issued",
        "order.delivered",
        "order.acknowledged",
        "order.item_outcome_reported",
        "order.item_outcome_reported",
        "order.closed",
    ]
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    first = events[0]["position"]  # the registry's facts (two platforms registered) come first
    assert first is not None and [e["position"] for e in events] == list(range(first, first + 6))

    # A closed order refuses further outcomes with a problem, and records nothing.
    r = api.call("POST", f"/v1/orders/{order['id']}/withdraw", "issuer", json={"reason": "late"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/order-closed"
    assert len(api.call("GET", f"/v1/orders/{order['id']}/events", "auditor").json()) == 6


def test_contest_uphold_then_outcomes(api: Api) -> None:
    order = api.issue().json()
    oid = order["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a")
    api.advance(hours=1)
    r = api.call("POST", f"/v1/orders/{oid}/contest", "platform_a", json={"grounds": "not_illegal", "detail": "satire"})
    assert r.json()["status"] == "contested"
    # While contested the platform cannot report outcomes.
    r = api.call(
        "POST",
        f"/v1/orders/{oid}/outcomes",
        "platform_a",
        json={"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": iso(api)}]},
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/order-contested"
    api.advance(hours=3)
    r = api.call("POST", f"/v1/orders/{oid}/uphold", "issuer", json={"reason": "review: stands"})
    upheld = r.json()
    assert upheld["status"] == "acknowledged"
    # The 3 contested hours do not count: the deadline moves 3 h later.
    assert upheld["deadline"] == "2026-03-03T12:00:00Z"
    body = {
        "outcomes": [
            {"item_id": "item-1", "outcome": "removed", "actioned_at": iso(api)},
            {"item_id": "item-2", "outcome": "restricted", "actioned_at": iso(api)},
        ]
    }
    assert api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body).json()["status"] == "closed"


def test_withdraw(api: Api) -> None:
    oid = api.issue().json()["id"]
    r = api.call("POST", f"/v1/orders/{oid}/withdraw", "issuer", json={"reason": "court annulled the decision"})
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    r = api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a")
    assert r.status_code == 409 and r.json()["type"] == "/problems/order-withdrawn"


def test_idempotent_reissue_returns_the_same_order(api: Api) -> None:
    first = api.call(
        "POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k-1"}
    )
    again = api.call(
        "POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k-1"}
    )
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    # The issuer_reference alone also de-duplicates (no key sent).
    assert api.issue().json()["id"] == first.json()["id"]
    listed = api.call("GET", "/v1/orders", "issuer").json()
    assert [o["id"] for o in listed["items"]] == [first.json()["id"]]


def test_same_key_or_reference_with_another_body_is_409(api: Api) -> None:
    api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k-1"})
    other = order_body(api.platform_a, issuer_reference="MCI-2026-0002")
    r = api.call("POST", "/v1/orders", "issuer", json=other, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 409 and r.json()["type"] == "/problems/idempotency-key-reused"
    r = api.issue(statement_of_reasons="something else entirely")
    assert r.status_code == 409 and r.json()["type"] == "/problems/issuer-reference-reused"
    assert len(api.call("GET", "/v1/orders", "admin").json()["items"]) == 1


def test_issuer_reference_is_unique_per_authority_only(api: Api) -> None:
    a = api.issue("issuer").json()
    b = api.issue("issuer2").json()
    assert a["id"] != b["id"]


def test_cross_tenant_access_is_404(api: Api) -> None:
    oid = api.issue().json()["id"]
    for who in ("platform_b", "issuer2"):
        assert api.call("GET", f"/v1/orders/{oid}", who).status_code == 404
        assert api.call("GET", f"/v1/orders/{oid}/events", who).status_code == 404
        assert api.call("GET", "/v1/orders", who).json()["items"] == []
    assert api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_b").status_code == 404
    assert api.call("POST", f"/v1/orders/{oid}/withdraw", "issuer2", json={"reason": "x"}).status_code == 404
    # Nothing was recorded by the refused calls.
    assert len(api.call("GET", f"/v1/orders/{oid}/events", "admin").json()) == 1
    for who in ("platform_a", "issuer", "auditor", "admin"):
        assert api.call("GET", f"/v1/orders/{oid}", who).status_code == 200


def test_roles_guard_endpoints(api: Api) -> None:
    assert api.issue("platform_a").status_code == 403
    assert api.issue("auditor").status_code == 403
    assert api.issue(None).status_code == 401
    r = api.call("GET", "/v1/orders", None, headers={"Authorization": "Bearer tdk_wrong"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    oid = api.issue().json()["id"]
    assert api.call("POST", f"/v1/orders/{oid}/acknowledge", "issuer").status_code == 403
    assert api.call("POST", f"/v1/orders/{oid}/uphold", "platform_a", json={"reason": "x"}).status_code == 403


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    ids = []
    for n in range(5):
        api.advance(minutes=1)
        platform = api.platform_a if n % 2 == 0 else api.platform_b
        category = "fraud" if n < 2 else "extremism"
        r = api.issue(platform=platform, issuer_reference=f"R-{n}", category=category)
        ids.append(r.json()["id"])
    page1 = api.call("GET", "/v1/orders?limit=2", "issuer").json()
    page2 = api.call("GET", f"/v1/orders?limit=2&cursor={page1['next_cursor']}", "issuer").json()
    page3 = api.call("GET", f"/v1/orders?limit=2&cursor={page2['next_cursor']}", "issuer").json()
    got = [o["id"] for p in (page1, page2, page3) for o in p["items"]]
    assert got == list(reversed(ids)) and page3["next_cursor"] is None
    assert len(api.call("GET", f"/v1/orders?platform={api.platform_b}", "admin").json()["items"]) == 2
    assert len(api.call("GET", "/v1/orders?category=fraud", "admin").json()["items"]) == 2
    api.call("POST", f"/v1/orders/{ids[0]}/withdraw", "issuer", json={"reason": "x"})
    assert [o["id"] for o in api.call("GET", "/v1/orders?status=withdrawn", "admin").json()["items"]] == [ids[0]]
    since = (T0.replace(minute=3)).isoformat().replace("+00:00", "Z")
    assert len(api.call("GET", "/v1/orders", "admin", params={"issued_from": since}).json()["items"]) == 3
    assert len(api.call("GET", "/v1/orders", "platform_a").json()["items"]) == 3


def test_concurrent_repeats_create_one_order(api: Api) -> None:
    """Eight copies of one order sent at once (half with one Idempotency-Key): one order, and all eight get it."""
    copies = 8
    barrier = threading.Barrier(copies)
    answers: list[Any] = [None] * copies
    errors: list[BaseException | None] = [None] * copies

    def issue(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            headers = {"Idempotency-Key": "same-key"} if n % 2 else {}
            answers[n] = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers=headers)
        except BaseException as exc:  # noqa: BLE001 - every thread's failure is reported below
            errors[n] = exc

    threads = [threading.Thread(target=issue, args=(n,), name=f"repeat-{n}") for n in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not [t.name for t in threads if t.is_alive()], "a request never returned"
    assert errors == [None] * copies, errors
    assert all(a is not None for a in answers)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * (copies - 1) + [201], [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, ids
    assert all(a.headers["location"] == f"/v1/orders/{a.json()['id']}" for a in answers)
    assert all(a.headers.get("idempotent-replayed") == "true" for a in answers if a.status_code == 200)
    listed = api.call("GET", "/v1/orders", "admin").json()["items"]
    assert [o["id"] for o in listed] == list(ids)
    assert len(api.call("GET", f"/v1/orders/{ids.pop()}/events", "admin").json()) == 1
