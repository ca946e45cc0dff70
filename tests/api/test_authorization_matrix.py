"""Who may call what: every operation of the OpenAPI document x every kind of caller, in one table, called for real.

The expected answers come from docs/api.md and services/http/deps.py: no key, an unknown one, a revoked one or an
expired one is 401 wherever a key is needed (the revoked and expired keys are admin keys: their role does not help);
a role the endpoint is not for is 403; another tenant's order (or event) is 404, never 403; public endpoints answer
everyone alike. A new operation without a row fails the first test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from services.notifier.tables import deliveries
from shared.auth import create_key
from tests.builders import order_body, platform_fields
from tests.support import Api

PUBLISHED = "2026-02"
CALLERS = ("none", "bad", "revoked", "expired", "admin", "auditor", "issuer", "issuer2", "platform", "platform2")

# issuer: the authority of the order in the path (mci); issuer2: another authority. platform: the platform the
# order is addressed to (A); platform2: another platform (B). Without an order in the path, "2" is just another tenant.
# fmt: off
#                              none bad  revk expd admin audit iss  iss2 plat plat2
MATRIX: dict[str, tuple[int, ...]] = {
    # the registry (admin writes; admin and auditor read)
    "register_platform":        (401, 401, 401, 401, 201, 403, 403, 403, 403, 403),
    "list_platforms":           (401, 401, 401, 401, 200, 200, 403, 403, 403, 403),
    "get_platform":             (401, 401, 401, 401, 200, 200, 403, 403, 403, 403),
    "update_platform":          (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    "rotate_platform_secret":   (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    "platform_history":         (401, 401, 401, 401, 200, 200, 403, 403, 403, 403),
    # orders: issuers issue and review their own, platforms answer their own, every role reads what it may see
    "issue_order":              (401, 401, 401, 401, 403, 403, 201, 201, 403, 403),
    "list_orders":              (401, 401, 401, 401, 200, 200, 200, 200, 200, 200),
    "get_order":                (401, 401, 401, 401, 200, 200, 200, 404, 200, 404),
    "order_events":             (401, 401, 401, 401, 200, 200, 200, 404, 200, 404),
    "order_evidence":           (401, 401, 401, 401, 200, 200, 200, 404, 200, 404),
    "acknowledge_order":        (401, 401, 401, 401, 403, 403, 403, 403, 200, 404),
    "report_outcomes":          (401, 401, 401, 401, 403, 403, 403, 403, 200, 404),
    "contest_order":            (401, 401, 401, 401, 403, 403, 403, 403, 200, 404),
    "uphold_order":             (401, 401, 401, 401, 403, 403, 200, 404, 403, 403),
    "withdraw_order":           (401, 401, 401, 401, 403, 403, 200, 404, 403, 403),
    "accept_declines":          (401, 401, 401, 401, 403, 403, 200, 404, 403, 403),
    "record_notice":            (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    # dashboards and SLA (admin, auditor, issuers for their own)
    "dashboard_overview":       (401, 401, 401, 401, 200, 200, 200, 200, 403, 403),
    "sla_summary":              (401, 401, 401, 401, 200, 200, 200, 200, 403, 403),
    "sla_orders":               (401, 401, 401, 401, 200, 200, 200, 200, 403, 403),
    # deliveries (admin)
    "list_deliveries":          (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    "redeliver":                (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    # API keys (admin)
    "create_api_key":           (401, 401, 401, 401, 201, 403, 403, 403, 403, 403),
    "list_api_keys":            (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    "get_api_key":              (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    "revoke_api_key":           (401, 401, 401, 401, 200, 403, 403, 403, 403, 403),
    "rotate_api_key":           (401, 401, 401, 401, 201, 403, 403, 403, 403, 403),
    # the ledger: public, except an inclusion proof (auditor, admin; a platform for its own orders' events)
    "ledger_checkpoint":        (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "ledger_public_key":        (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "ledger_consistency_proof": (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "ledger_inclusion_proof":   (401, 401, 401, 401, 200, 200, 403, 403, 200, 404),
    # public
    "transparency_report":      (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "transparency_report_csv":  (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "transparency_publication": (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "transparency_publication_proof": (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "health":                   (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "readiness":                (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "metrics":                  (200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
}
# fmt: on


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """operationId -> (method, path template) of every operation in the document."""
    return {
        op["operationId"]: (method, path) for path, item in document["paths"].items() for method, op in item.items()
    }


def test_every_operation_has_a_row_and_every_row_an_operation(api: Api) -> None:
    served = operations(api.client.app.openapi())  # type: ignore[attr-defined]
    assert len(served) > 30
    assert sorted(set(served) - set(MATRIX)) == [], "operations without a row in MATRIX"
    assert sorted(set(MATRIX) - set(served)) == [], "rows for operations that no longer exist"
    assert all(len(row) == len(CALLERS) for row in MATRIX.values())


@dataclass
class World:
    """Data that exists, shared by the calls that only read; `fresh` makes what a command would use up."""

    api: Api
    keys: dict[str, str | None]
    order: str
    position: int
    tree_size: int
    hooked: str
    key_id: str
    counter: itertools.count[int]

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def issued(self) -> str:
        r = self.api.issue(issuer_reference=self.unique("M"))
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def acted(self, who: str, action: str, body: dict[str, Any] | None) -> str:
        order = self.issued()
        r = self.api.call("POST", f"/v1/orders/{order}/{action}", who, json=body)
        assert r.status_code == 200, r.text
        return order

    def outcomes(self, outcome: str) -> dict[str, Any]:
        now = self.api.clock.now().isoformat()
        reason = {"reason": "lawful speech"} if outcome == "declined" else {}
        return {
            "outcomes": [{"item_id": f"item-{n}", "outcome": outcome, "actioned_at": now, **reason} for n in (1, 2)]
        }

    def dead_delivery(self) -> str:
        r = self.api.issue(platform=self.hooked, issuer_reference=self.unique("H"))
        assert r.status_code == 201, r.text
        order = r.json()["id"]
        with self.api.container.db.transaction() as conn:
            conn.execute(update(deliveries).where(deliveries.c.order_id == order).values(state="dead"))
        [found] = self.api.call("GET", f"/v1/deliveries?order_id={order}", "admin").json()
        return str(found["id"])

    def new_key(self) -> str:
        return self.api.container.keys.create("auditor", actor="test")[1].id


Request = tuple[str, dict[str, Any]]  # path with its query, and the keyword arguments of the call
CONTEST = {"grounds": "other", "detail": "why"}
REVIEW = {"reason": "reviewed"}

# How to call each operation: its concrete path and body, with fresh data for a command that would use it up.
CALLS: dict[str, Callable[[World], Request]] = {
    "register_platform": lambda w: ("/v1/platforms", {"json": platform_fields(w.unique("P"))}),
    "list_platforms": lambda w: ("/v1/platforms", {}),
    "get_platform": lambda w: (f"/v1/platforms/{w.api.platform_a}", {}),
    "update_platform": lambda w: (f"/v1/platforms/{w.api.platform_a}", {"json": {"monthly_users": 210_000}}),
    "rotate_platform_secret": lambda w: (f"/v1/platforms/{w.api.platform_a}/secret/rotate", {}),
    "platform_history": lambda w: (f"/v1/platforms/{w.api.platform_a}/history", {}),
    "issue_order": lambda w: ("/v1/orders", {"json": order_body(w.api.platform_a, issuer_reference=w.unique("I"))}),
    "list_orders": lambda w: ("/v1/orders", {}),
    "get_order": lambda w: (f"/v1/orders/{w.order}", {}),
    "order_events": lambda w: (f"/v1/orders/{w.order}/events", {}),
    "order_evidence": lambda w: (f"/v1/orders/{w.order}/evidence", {}),
    "acknowledge_order": lambda w: (f"/v1/orders/{w.issued()}/acknowledge", {}),
    "report_outcomes": lambda w: (f"/v1/orders/{w.issued()}/outcomes", {"json": w.outcomes("removed")}),
    "contest_order": lambda w: (f"/v1/orders/{w.issued()}/contest", {"json": CONTEST}),
    "uphold_order": lambda w: (f"/v1/orders/{w.acted('platform_a', 'contest', CONTEST)}/uphold", {"json": REVIEW}),
    "withdraw_order": lambda w: (f"/v1/orders/{w.issued()}/withdraw", {"json": REVIEW}),
    "accept_declines": lambda w: (
        f"/v1/orders/{w.acted('platform_a', 'outcomes', w.outcomes('declined'))}/declines/accept",
        {"json": REVIEW},
    ),
    "record_notice": lambda w: (
        f"/v1/orders/{w.issued()}/notices",
        {"json": {"channel": "email", "address": "rep@example.kz", "evidence": "sent, message id 42"}},
    ),
    "dashboard_overview": lambda w: ("/v1/dashboard/overview", {}),
    "sla_summary": lambda w: ("/v1/sla/summary", {}),
    "sla_orders": lambda w: ("/v1/sla/orders", {}),
    "list_deliveries": lambda w: ("/v1/deliveries", {}),
    "redeliver": lambda w: (f"/v1/deliveries/{w.dead_delivery()}/redeliver", {}),
    "create_api_key": lambda w: ("/v1/keys", {"json": {"role": "auditor", "label": "matrix"}}),
    "list_api_keys": lambda w: ("/v1/keys", {}),
    "get_api_key": lambda w: (f"/v1/keys/{w.key_id}", {}),
    "revoke_api_key": lambda w: (f"/v1/keys/{w.new_key()}/revoke", {}),
    "rotate_api_key": lambda w: (f"/v1/keys/{w.new_key()}/rotate", {}),
    "ledger_checkpoint": lambda w: ("/v1/ledger/checkpoint", {}),
    "ledger_public_key": lambda w: ("/v1/ledger/public-key", {}),
    "ledger_consistency_proof": lambda w: (f"/v1/ledger/proofs/consistency?first=1&second={w.tree_size}", {}),
    "ledger_inclusion_proof": lambda w: (
        f"/v1/ledger/proofs/inclusion?position={w.position}&tree_size={w.tree_size}",
        {},
    ),
    "transparency_report": lambda w: ("/v1/transparency/report", {}),
    "transparency_report_csv": lambda w: ("/v1/transparency/report.csv", {}),
    "transparency_publication": lambda w: (f"/v1/transparency/publications/{PUBLISHED}", {}),
    "transparency_publication_proof": lambda w: (f"/v1/transparency/publications/{PUBLISHED}/proof", {}),
    "health": lambda w: ("/healthz", {}),
    "readiness": lambda w: ("/readyz", {}),
    "metrics": lambda w: ("/metrics", {}),
}


def world(api: Api) -> World:
    """One order of authority mci to platform A in the ledger, a platform with a webhook, and a key per caller."""
    hooked = api.call(
        "POST", "/v1/platforms", "admin", json=platform_fields("Hooked", webhook_url="http://127.0.0.1:9/hook")
    )
    assert hooked.status_code == 201, hooked.text
    order = api.issue(issuer_reference="MATRIX-0").json()["id"]
    # The month before T0 is finished: its (empty) report published, and in the checkpoint below.
    assert api.container.publisher.publish(date.fromisoformat(PUBLISHED + "-01")) is not None
    api.container.sequencer.catch_up()
    checkpoint = api.container.ledger.checkpoint()
    position = api.call("GET", f"/v1/orders/{order}/events", "admin").json()[0]["position"]
    now = api.clock.now()
    with api.container.db.transaction() as conn:
        revoked = create_key(conn, "admin", now)
        expired = create_key(conn, "admin", now - timedelta(days=1), expires_at=now - timedelta(seconds=1))
        api.container.keys.revoke_in(conn, revoked[1].key_id)
    keys: dict[str, str | None] = {
        "none": None,
        "bad": "tdk_" + "x" * 43,
        "revoked": revoked[0],
        "expired": expired[0],
        "admin": api.keys["admin"],
        "auditor": api.keys["auditor"],
        "issuer": api.keys["issuer"],
        "issuer2": api.keys["issuer2"],
        "platform": api.keys["platform_a"],
        "platform2": api.keys["platform_b"],
    }
    return World(
        api, keys, order, position, checkpoint.tree_size, hooked.json()["id"], revoked[1].key_id, itertools.count()
    )


def test_every_operation_answers_every_caller_as_the_table_says(api: Api) -> None:
    w = world(api)
    served = operations(api.client.app.openapi())  # type: ignore[attr-defined]
    assert set(CALLS) == set(served)
    wrong = []
    calls = 0
    for operation, (method, _template) in sorted(served.items()):
        for caller, expected in zip(CALLERS, MATRIX[operation], strict=True):
            path, kwargs = CALLS[operation](w)
            # Reads by position (evidence, proofs) wait for numbering; here the sequencer is driven by hand.
            api.container.sequencer.catch_up()
            key = w.keys[caller]
            headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
            r = api.client.request(method.upper(), path, headers=headers, **kwargs)
            calls += 1
            if r.status_code != expected:
                wrong.append(f"{operation} as {caller}: {r.status_code}, expected {expected}: {r.text[:200]}")
    assert calls == len(MATRIX) * len(CALLERS)
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("caller", ["revoked", "expired"])
def test_the_revoked_and_expired_callers_are_admin_keys(api: Api, caller: str) -> None:
    # Otherwise their 401s could be a role's 403 in disguise; the same key made usable again would pass.
    w = world(api)
    assert api.container.keys.valid(w.keys[caller] or "") is None
    assert MATRIX["list_api_keys"][CALLERS.index(caller)] == 401
