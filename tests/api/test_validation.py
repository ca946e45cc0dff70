"""Bad input gets a clear problem+json with the right status, and writes nothing."""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

import pytest
from sqlalchemy import func, select

from services.http.schemas.orders import FORMAT_CHARACTERS
from shared.eventstore.tables import events
from tests.builders import order_body, platform_fields
from tests.support import Api


def stored_events(api: Api) -> int:
    """Events of orders (the registry's own facts about the test's platforms are not counted)."""
    with api.container.db.read() as conn:
        query = select(func.count()).select_from(events).where(events.c.type.like("order.%"))
        return int(conn.execute(query).scalar_one())


def invalid_at(r: Any) -> list[tuple[str, ...]]:
    """The locations of a 422 validation problem's errors (asserting that it is one)."""
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "/problems/validation" and problem["status"] == 422, problem
    return [tuple(e["location"]) for e in problem["errors"]]


def messages(r: Any) -> str:
    return " | ".join(e["message"] for e in r.json()["errors"])


B = "body"
# (case, change, where the one error is, words of its message: a check that spans fields is reported on the body)
BAD_ORDERS: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = [
    ("no items", {"items": []}, (B, "items"), "at least 1 item"),
    ("relative url", {"items": [{"url": "/p/1"}]}, (B, "items", "0", "url"), "absolute http(s) URL"),
    ("ftp url", {"items": [{"url": "ftp://social.example/p/1"}]}, (B, "items", "0", "url"), "absolute http(s) URL"),
    ("javascript url", {"items": [{"url": "javascript:alert(1)"}]}, (B, "items", "0", "url"), "absolute http(s) URL"),
    ("url with spaces", {"items": [{"url": "https://social.example/a b"}]}, (B, "items", "0", "url"), "whitespace"),
    (
        "same url twice",
        {"items": [{"url": "https://a.example/1"}, {"url": "https://a.example/1"}]},
        (B,),
        "the same item URL is listed twice",
    ),
    ("unknown category", {"category": "insulting_the_minister"}, (B, "category"), "child_cyberbullying"),
    ("other without specification", {"category": "other"}, (B,), "needs a category_specification"),
    ("legal basis missing", {"legal_basis": None}, (B, "legal_basis"), "Field required"),
    (
        "legal basis blank article",
        {"legal_basis": {"act": "Law", "article": "  "}},
        (B, "legal_basis", "article"),
        "at least 1 character",
    ),
    ("no reasons", {"statement_of_reasons": ""}, (B, "statement_of_reasons"), "at least 1 character"),
    ("reasons too long", {"statement_of_reasons": "x" * 10_001}, (B, "statement_of_reasons"), "at most 10000"),
    ("bad territory", {"territorial_scope": ["XX"]}, (B, "territorial_scope", "0"), "'XX'"),
    (
        "territory lowercase nonsense",
        {"territorial_scope": ["kazakhstan"]},
        (B, "territorial_scope", "0"),
        "at most 6 characters",
    ),
    ("empty territory", {"territorial_scope": []}, (B, "territorial_scope"), "at least 1 item"),
    ("unknown field", {"priority": "urgent"}, (B, "priority"), "Extra inputs are not permitted"),
    ("bad action", {"requested_action": "delete_account"}, (B, "requested_action"), "'remove' or 'restrict'"),
    (
        "bad attachment digest",
        {"attachments": [{"sha256": "abc"}]},
        (B, "attachments", "0", "sha256"),
        "should match pattern",
    ),
    ("control chars in reference", {"issuer_reference": "MCI 1\n"}, (B, "issuer_reference"), "should match pattern"),
]


@pytest.mark.parametrize(("case", "change", "location", "words"), BAD_ORDERS, ids=[c[0] for c in BAD_ORDERS])
def test_invalid_orders_are_422_and_record_nothing(
    api: Api, case: str, change: dict[str, Any], location: tuple[str, ...], words: str
) -> None:
    body = order_body(api.platform_a)
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    r = api.call("POST", "/v1/orders", "issuer", json=body)
    assert invalid_at(r) == [location], (case, r.text)
    assert words in messages(r)
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
    for body, location, words in [
        (naive, (B, "outcomes", "0", "actioned_at"), "needs a timezone"),
        (declined, (B, "outcomes", "0"), "a declined item needs a reason"),
        (empty, (B, "outcomes"), "at least 1 item"),
    ]:
        r = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body)
        assert invalid_at(r) == [location]
        assert words in messages(r)
    assert stored_events(api) == 1


def test_unknown_order_and_route_are_404_problems(api: Api) -> None:
    r = api.call("GET", "/v1/orders/does-not-exist", "admin")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = api.call("GET", "/v1/nothing-here", "admin")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = api.call("GET", "/v1/orders?cursor=%%%", "admin")
    assert r.status_code == 400


def test_platform_registration_validation(api: Api) -> None:
    r = api.call("POST", "/v1/platforms", "admin", json=platform_fields("A", monthly_users=5))
    assert r.status_code == 409 and r.json()["type"] == "/problems/platform-exists"
    r = api.call("POST", "/v1/platforms", "admin", json=platform_fields("C", monthly_users=-1))
    assert invalid_at(r) == [(B, "monthly_users")]
    r = api.call("POST", "/v1/platforms", "admin", json=platform_fields("C", webhook_url="ftp://x"))
    assert r.status_code == 422 and r.json()["type"] == "/problems/webhook-url-refused", r.text
    assert "scheme" in r.json()["detail"]
    created = api.call(
        "POST", "/v1/platforms", "admin", json=platform_fields("C", webhook_url="http://127.0.0.1:9/hook")
    )
    assert created.status_code == 201 and created.json()["webhook_secret"].startswith("whsec_")
    assert "webhook_secret" not in api.call("GET", f"/v1/platforms/{created.json()['id']}", "auditor").json()
    assert [p["name"] for p in api.call("GET", "/v1/platforms", "admin").json()] == ["A", "B", "C"]


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
        assert invalid_at(api.call("GET", f"/v1/orders?{query}", "admin")) == [("query", "issued_from")], query
    assert api.call("GET", "/v1/orders?cursor=AA", "admin").status_code == 400
    assert api.call("GET", "/v1/orders/%00", "admin").status_code == 400
    assert api.call("GET", "/v1/orders?platform=%00", "admin").status_code == 400
    assert invalid_at(api.issue(platform="\u0000")) == [(B, "platform_id")]
    assert invalid_at(api.issue(signed_off_by="A\u0000B")) == [(B, "signed_off_by")]
    r = api.call("POST", "/v1/platforms", "admin", json=platform_fields("Big", monthly_users=3_000_000_000))
    assert invalid_at(r) == [(B, "monthly_users")]
    assert stored_events(api) == 0


def test_a_key_first_seen_on_a_replay_still_guards_its_body(api: Api) -> None:
    first = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k1"})
    again = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"Idempotency-Key": "k2"})
    assert again.json()["id"] == first.json()["id"]
    other = order_body(api.platform_a, issuer_reference="MCI-2026-0099")
    r = api.call("POST", "/v1/orders", "issuer", json=other, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 409 and r.json()["type"] == "/problems/idempotency-key-reused"


# ------------------------------------------------------------------------- Unicode format characters (Cf)

# A right-to-left override, a zero-width space, a bidi isolate, a word joiner, a BOM and a tag character.
FORMAT_SAMPLES = ["\u202e", "\u200b", "\u2066", "\u2060", "\ufeff", "\U000e0041"]


def test_the_refused_set_covers_every_format_character_of_this_python() -> None:
    cf = "".join(chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf")
    refused = re.compile(f"[{FORMAT_CHARACTERS}]")
    assert all(refused.fullmatch(c) for c in cf), [f"U+{ord(c):04X}" for c in cf if not refused.fullmatch(c)]
    assert not refused.search("Ministry of Culture, «Қазақстан» — ок\u00a0ok")  # letters, punctuation, NBSP


@pytest.mark.parametrize("char", FORMAT_SAMPLES, ids=[f"U+{ord(c):04X}" for c in FORMAT_SAMPLES])
def test_format_characters_are_refused_in_every_free_text_field_naming_it(api: Api, char: str) -> None:
    oid = api.issue().json()["id"]
    before = stored_events(api)
    cases: list[tuple[str, str, str, dict[str, Any], tuple[str, ...]]] = [
        ("POST", "/v1/orders", "issuer", order_body(api.platform_a, signed_off_by=f"A{char}B"), (B, "signed_off_by")),
        (
            "POST",
            "/v1/orders",
            "issuer",
            order_body(api.platform_a, statement_of_reasons=f"reasons {char}"),
            (B, "statement_of_reasons"),
        ),
        ("POST", "/v1/orders", "issuer", order_body(api.platform_a, unit=f"Dept{char}"), (B, "unit")),
        (
            "POST",
            "/v1/orders",
            "issuer",
            order_body(api.platform_a, legal_basis={"act": f"Law{char}", "article": "1"}),
            (B, "legal_basis", "act"),
        ),
        (
            "POST",
            "/v1/orders",
            "issuer",
            order_body(api.platform_a, items=[{"url": f"https://a.example/{char}x"}]),
            (B, "items", "0", "url"),
        ),
        ("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", {"note": f"seen{char}"}, (B, "note")),
        ("POST", f"/v1/orders/{oid}/contest", "platform_a", {"grounds": "other", "detail": f"x{char}"}, (B, "detail")),
        ("POST", f"/v1/orders/{oid}/withdraw", "issuer", {"reason": f"{char}annulled"}, (B, "reason")),
        ("POST", "/v1/platforms", "admin", platform_fields(f"Evil{char}Corp"), (B, "name")),
        (
            "PATCH",
            f"/v1/platforms/{api.platform_a}",
            "admin",
            {"representative": {"name": f"R{char}", "email": "r@x.kz"}},
            (B, "representative", "name"),
        ),
    ]
    for method, path, who, body, location in cases:
        r = api.call(method, path, who, json=body)
        assert invalid_at(r) == [location], (path, location, r.text)
        assert f"U+{ord(char):04X}" in messages(r), r.text
    assert stored_events(api) == before
    names = [p["name"] for p in api.call("GET", "/v1/platforms", "admin").json()]
    assert names == ["A", "B"]


def test_text_without_format_characters_is_accepted(api: Api) -> None:
    r = api.issue(signed_off_by="Ә. Нұрланова", statement_of_reasons="Посттар — «қорлау»\u00a0және қауіп.")
    assert r.status_code == 201, r.text
