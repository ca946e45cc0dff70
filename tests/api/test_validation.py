"""Bad input gets a clear problem+json with the right status, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from shared.eventstore.tables import events
from tests.support import Api, order_body


def stored_events(api: Api) -> int:
    """Events of orders (the registry's own facts about the test's platforms are not counted)."""
    with api.container.db.read() as conn:
        query = select(func.count()).select_from(events).where(events.c.type.like("order.%"))
        return int(conn.execute(query).scalar_one())


BAD_ORDERS: list[tuple[str, dict[str, Any], str]] = [
    ("no items", {"items": []}, "items"),
    ("relative url", {"items": [{"url": "/p/1"}]}, "items"),
    ("ftp url", {"items": [{"url": "ftp://social.example/p/1"}]}, "items"),
    ("javascript url", {"items": [{"url": "javascript:alert(1)"}]}, "items"),
    ("url with spaces", {"items": [{"url": "https://social.example/a b"}]}, "items"),
    ("same url twice", {"items": [{"url": "https://a.example/1"}, {"url": "https://a.example/1"}]}, "body"),
    ("unknown category", {"category": "insulting_the_minister"}, "category"),
    ("other without specification", {"category": "other"}, "body"),
    ("legal basis missing", {"legal_basis": None}, "legal_basis"),
    ("legal basis blank article", {"legal_basis": {"act": "Law", "article": "  "}}, "legal_basis"),
    ("no reasons", {"statement_of_reasons": ""}, "statement_of_reasons"),
    ("reasons too long", {"statement_of_reasons": "x" * 10_001}, "statement_of_reasons"),
    ("bad territory", {"territorial_scope": ["XX"]}, "territorial_scope"),
    ("territory lowercase nonsense", {"territorial_scope": ["kazakhstan"]}, "territorial_scope"),
    ("empty territory", {"territorial_scope": []}, "territorial_scope"),
    ("unknown field", {"priority": "urgent"}, "priority"),
    ("bad action", {"requested_action": "delete_account"}, "requested_action"),
    ("bad attachment digest", {"attachments": [{"sha256": "abc"}]}, "attachments"),
    ("control chars in reference", {"issuer_reference": "MCI 1\n"}, "issuer_reference"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_ORDERS, ids=[c[0] for c in BAD_ORDERS])
def test_invalid_orders_are_422_and_record_nothing(api: Api, case: str, change: dict[str, Any], field: str) -> None:
    body = order_body(api.platform_a)
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    r = api.call("POST", "/v1/orders", "issuer", json=body)
    assert r.status_code == 422, (case, r.text)
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "/problems/validation" and problem["status"] == 422
    assert any(field in e["location"] for e in problem["errors"]), problem["errors"]
    assert stored_events(api) == 0


def test_subdivision_codes_are_accepted(api: Api) -> None:
    r = api.issue(territorial_scope=["KZ", "KZ-75"], requested_action="restrict")
    assert r.status_code == 201, r.text
    assert r.json()["territorial_scope"] == ["KZ", "KZ-75"]


def test_unknown_platform_is_422(api: Api) -> None:
    r = api.issue(platform="no-such-platform")
    assert r.status_code == 422 and r.json()["type"] == "/problems/unknown-platform"
    assert stored_events(api) == 0


def test_malformed_json_is_400(api: Api) -> None:
    r = api.call("POST", "/v1/orders", "issuer", content=b'{"items": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-json"


def test_oversized_body_is_413_before_parsing(api: Api) -> None:
    body = order_body(api.platform_a, statement_of_reasons="x" * 300_000)
    r = api.call("POST", "/v1/orders", "issuer", json=body)
    assert r.status_code == 413 and r.json()["type"] == "/problems/body-too-large"
    assert stored_events(api) == 0


def test_oversized_chunked_body_is_413(api: Api) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 10_000

    r = api.call("POST", "/v1/orders", "issuer", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (
            "outcomes",
            {"outcomes": [{"item_id": "nope", "outcome": "removed", "actioned_at": "2026-03-02T09:00:00Z"}]},
            "unknown-item",
        ),
        (
            "outcomes",
            {"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": "2030-01-01T00:00:00Z"}]},
            "actioned-in-future",
        ),
    ],
)
def test_refused_outcomes_are_409_and_record_nothing(api: Api, path: str, body: dict[str, Any], code: str) -> None:
    oid = api.issue().json()["id"]
    before = stored_events(api)
    r = api.call("POST", f"/v1/orders/{oid}/{path}", "platform_a", json=body)
    assert r.status_code == 409 and r.json()["type"] == f"/problems/{code}"
    assert stored_events(api) == before


def test_outcome_validation(api: Api) -> None:
    oid = api.issue().json()["id"]
    naive = {"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": "2026-03-02T09:00:00"}]}
    declined = {"outcomes": [{"item_id": "item-1", "outcome": "declined", "actioned_at": "2026-03-02T09:00:00Z"}]}
    empty: dict[str, Any] = {"outcomes": []}
    for body in (naive, declined, empty):
        r = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body)
        assert r.status_code == 422, r.text
    assert stored_events(api) == 1


def test_unknown_order_and_route_are_404_problems(api: Api) -> None:
    r = api.call("GET", "/v1/orders/does-not-exist", "admin")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = api.call("GET", "/v1/nothing-here", "admin")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = api.call("GET", "/v1/orders?cursor=%%%", "admin")
    assert r.status_code == 400


def test_platform_registration_validation(api: Api) -> None:
    r = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={"name": "A", "monthly_users": 5, "representative": {"name": "R", "email": "r@x.kz"}},
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/platform-exists"
    r = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={"name": "C", "monthly_users": -1, "representative": {"name": "R", "email": "r@x.kz"}},
    )
    assert r.status_code == 422
    r = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={
            "name": "C",
            "monthly_users": 5,
            "representative": {"name": "R", "email": "r@x.kz"},
            "webhook_url": "ftp://x",
        },
    )
    assert r.status_code == 422
    created = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={
            "name": "C",
            "monthly_users": 5,
            "representative": {"name": "R", "email": "r@x.kz"},
            "webhook_url": "http://127.0.0.1:9/hook",
        },
    )
    assert created.status_code == 201 and created.json()["webhook_secret"].startswith("whsec_")
    assert "webhook_secret" not in api.call("GET", f"/v1/platforms/{created.json()['id']}", "auditor").json()


def test_generated_item_ids_never_collide_with_given_ones(api: Api) -> None:
    items = [
        {"url": "https://a.example/1", "item_id": "item-2"},
        {"url": "https://a.example/2"},
        {"url": "https://a.example/3"},
    ]
    r = api.issue(items=items)
    assert r.status_code == 201, r.text
    assert [i["item_id"] for i in r.json()["items"]] == ["item-2", "item-1", "item-3"]


def test_filters_and_ids_that_the_database_cannot_hold_are_client_errors(api: Api) -> None:
    for query in ("issued_from=2026-01-01T00:00:00", "issued_from=0001-01-01T00:00:00%2B01:00"):
        assert api.call("GET", f"/v1/orders?{query}", "admin").status_code == 422, query
    assert api.call("GET", "/v1/orders?cursor=AA", "admin").status_code == 400
    assert api.call("GET", "/v1/orders/%00", "admin").status_code == 400
    assert api.call("GET", "/v1/orders?platform=%00", "admin").status_code == 400
    assert api.issue(platform="\u0000").status_code == 422
    assert api.issue(signed_off_by="A\u0000B").status_code == 422
    r = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={"name": "Big", "monthly_users": 3_000_000_000, "representative": {"name": "R", "email": "r@x.kz"}},
    )
    assert r.status_code == 422
    assert stored_events(api) == 0


def test_a_key_first_seen_on_a_replay_still_guards_its_body(api: Api) -> None:
    first = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k1"})
    again = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k2"})
    assert again.json()["id"] == first.json()["id"]
    other = order_body(api.platform_a, issuer_reference="MCI-2026-0099")
    r = api.call("POST", "/v1/orders", "issuer", json=other, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 409 and r.json()["type"] == "/problems/idempotency-key-reused"
