"""Who may see which order (tenancy), written once: for a row in hand and as a query's WHERE clause.

Admins and auditors see every order, an issuer its authority's, a platform its own. What a caller may not see
is "not found" to it, never "forbidden": another tenant's order is not its business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, true

from shared.auth import Principal

TenantColumn = Literal["authority_id", "platform_id"]


def tenant(principal: Principal) -> tuple[TenantColumn, str] | None:
    """The order field that limits what this caller sees, and its value; None for a caller who sees every order."""
    if principal.role == "issuer":
        return "authority_id", principal.authority_id or ""
    if principal.role == "platform":
        return "platform_id", principal.platform_id or ""
    return None  # admin, auditor


def visible(principal: Principal, order: Any) -> bool:
    """Whether this caller may see this order (any row or record with `authority_id` and `platform_id`)."""
    limit = tenant(principal)
    if limit is None:
        return True
    field, value = limit
    found = order[field] if isinstance(order, Mapping) else getattr(order, field)
    return bool(found == value)


def narrowed(principal: Principal, authority: str | None, platform: str | None) -> tuple[str | None, str | None]:
    """A query's authority and platform filters, narrowed to the orders this caller may see."""
    limit = tenant(principal)
    if limit is None:
        return authority, platform
    field, value = limit
    return (value, platform) if field == "authority_id" else (authority, value)


def visible_in(principal: Principal, table: Table) -> ColumnElement[bool]:
    """The WHERE clause that keeps the rows of `table` (with authority_id and platform_id columns) this caller may see."""
    limit = tenant(principal)
    if limit is None:
        return true()
    field, value = limit
    return table.c[field] == value
