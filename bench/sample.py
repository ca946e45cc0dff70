"""What the benches issue and register: one realistic order and one platform, in the shapes the service takes.

Benches keep their own sample (they must not import tests); it is the same order the API tests issue.
"""

from __future__ import annotations

from typing import Any

from services.http.schemas.orders import IssueOrderIn
from shared.auth import Principal
from shared.events import OrderFields

# The issuer every bench issues as; its authority ("mci") is the one `order_fields` names.
ISSUER = Principal(key_id="bench", role="issuer", authority_id="mci", authority_name="Ministry")

_ITEMS = [
    {"url": "https://social.example/p/1", "content_id": "p1", "content_type": "post"},
    {"url": "https://social.example/p/2"},
]
_LEGAL_BASIS = {"act": "Law on Mass Media", "article": "Art. 18-1 p.3"}
_REASONS = "The posts target a named minor with insults and threats."


def order_document(platform_id: str, reference: str) -> dict[str, Any]:
    """A valid `POST /v1/orders` body with two items, for `platform_id`, with issuer reference `reference`."""
    return dict(
        issuer_reference=reference,
        platform_id=platform_id,
        signed_off_by="A. Nurlanova, deputy head",
        unit="Department of Information Security",
        legal_basis=dict(_LEGAL_BASIS),
        category="child_cyberbullying",
        statement_of_reasons=_REASONS,
        items=[dict(item) for item in _ITEMS],
        requested_action="remove",
        territorial_scope=["KZ"],
        language="kk",
    )


def order_fields(platform_id: str, reference: str) -> OrderFields:
    """The same order as the service takes it from ISSUER (what `OrderService.issue` is given)."""
    return IssueOrderIn.model_validate(order_document(platform_id, reference)).to_order("mci", "Ministry")


def platform_fields(name: str, monthly_users: int = 200_000, **overrides: Any) -> dict[str, Any]:
    """A platform registration, as `registry.register` takes it; `overrides` add or replace fields."""
    representative = {"name": "Rep", "citizenship": "KZ", "email": "rep@example.kz"}
    return {"name": name, "monthly_users": monthly_users, "representative": representative, **overrides}
