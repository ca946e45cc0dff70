"""Test data shared by every test folder: one time origin, one order (as an HTTP body and as the domain command),
one platform registration. Pure data: nothing here starts an app or touches a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from services.http.schemas.orders import IssueOrderIn
from services.orders.domain import Command, IssueOrder, OrderState, apply, decide
from services.orders.sla_clock import DEFAULT_POLICY, SlaPolicy
from shared.auth import Principal
from shared.events import Authority, Event, Item, LegalBasis, OrderFields
from shared.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ISSUER_REFERENCE = "MCI-2026-0001"
REPRESENTATIVE: dict[str, str] = {"name": "Rep", "citizenship": "KZ", "email": "rep@example.kz"}


# The webhook secrets' KEK of every service under test (never a ./secrets.kek file); processes get it as
# TAKEDOWN_SECRETS_KEK.
TEST_KEK = "dGFrZWRvd24tdGVzdHMtc2VjcmV0cy1rZWstMzJieXQ="


def service_settings(db_url: str) -> Settings:
    """Settings of a service under test: workers off (tests drive them), webhooks to 127.0.0.1 allowed."""
    return Settings(
        environment="test",
        database_url=db_url,
        embedded_workers=False,
        webhook_allow_list=["127.0.0.1"],
        secrets_kek=SecretStr(TEST_KEK),
    )


# An issuer calling the order service directly (tests and tools that skip HTTP).
ISSUER_PRINCIPAL = Principal(key_id="test-issuer", role="issuer", authority_id="mci", authority_name="Ministry")


def order_fields(platform_id: str, issuer_reference: str = ISSUER_REFERENCE) -> OrderFields:
    """The order `order_body` describes, as the service takes it (on behalf of ISSUER_PRINCIPAL's authority)."""
    body = IssueOrderIn.model_validate(order_body(platform_id, issuer_reference=issuer_reference))
    return body.to_order("mci", "Ministry")


def platform_fields(name: str, monthly_users: int = 200_000, **overrides: Any) -> dict[str, Any]:
    """A platform registration (the `POST /v1/platforms` body, and what `registry.register` takes)."""
    return {"name": name, "monthly_users": monthly_users, "representative": dict(REPRESENTATIVE), **overrides}


def order_body(platform_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid `POST /v1/orders` body with two items; `overrides` replace top-level fields."""
    body: dict[str, Any] = {
        "issuer_reference": ISSUER_REFERENCE,
        "platform_id": platform_id,
        "signed_off_by": "A. Nurlanova, deputy head",
        "unit": "Department of Information Security",
        "legal_basis": {"act": "Law on Mass Media", "article": "Art. 18-1 p.3"},
        "category": "child_cyberbullying",
        "statement_of_reasons": "The posts target a named minor with insults and threats.",
        "items": [
            {"url": "https://social.example/p/1", "content_id": "p1", "content_type": "post"},
            {"url": "https://social.example/p/2"},
        ],
        "requested_action": "remove",
        "territorial_scope": ["KZ"],
        "language": "kk",
    }
    body.update(overrides)
    return body


def items(n: int) -> tuple[Item, ...]:
    """Items i0..i{n-1} with distinct URLs."""
    return tuple(Item(item_id=f"i{k}", url=f"https://example.test/p/{k}") for k in range(n))


def issue_cmd(n_items: int = 2, **overrides: Any) -> IssueOrder:
    """A valid `IssueOrder` for order "ord-1" with items i0..i{n_items-1}; `overrides` replace its fields."""
    fields: dict[str, Any] = {
        "order_id": "ord-1",
        "issuer_reference": ISSUER_REFERENCE,
        "authority": Authority(id="mci", name="Ministry of Culture and Information", unit="Media dept"),
        "signed_off_by": "A. Officer",
        "platform_id": "plat-1",
        "legal_basis": LegalBasis(act="Law on Mass Media", article="26"),
        "category": "child_cyberbullying",
        "statement_of_reasons": "Posts insult a named minor.",
        "items": items(n_items),
        "requested_action": "remove",
        "territorial_scope": ("KZ",),
        "language": "kk",
    }
    fields.update(overrides)
    order_id = fields.pop("order_id")
    return IssueOrder(order_id=order_id, order=OrderFields(**fields))


def run(state: OrderState | None, *steps: tuple[Command, datetime]) -> OrderState:
    """Decide and apply each (command, time) in turn; every command must be accepted."""
    for command, now in steps:
        state, _ = execute(state, command, now)
    assert state is not None
    return state


def execute(
    state: OrderState | None, command: Command, now: datetime, policy: SlaPolicy = DEFAULT_POLICY
) -> tuple[OrderState, Sequence[Event]]:
    """Decide and fold in one step: the new state and the events that led to it."""
    new = decide(state, command, now, policy)
    for event in new:
        state = apply(state, event)
    assert state is not None
    return state, new
