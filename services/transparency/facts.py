"""What the report and the dashboard count about each order, read from the order view and the SLA projection.

Only the fields an aggregate needs leave this module: never an item's URL, a statement of reasons, a signatory
or a representative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Table, func, select

from services.orders.views import orders
from services.sla.tables import sla_orders

# What became of one item: the platform's reported outcome, or why there is none.
OUTCOMES: tuple[str, ...] = ("removed", "restricted", "not_found", "declined", "contested", "withdrawn", "no_answer")
REPORTED = frozenset({"removed", "restricted", "not_found", "declined"})


@dataclass(frozen=True)
class OrderFacts:
    """One order as the aggregates see it."""

    order_id: str
    issued_at: datetime
    authority_id: str
    authority_name: str
    category: str
    legal_basis: str
    platform_id: str
    status: str
    item_outcomes: tuple[str, ...]
    sla_status: str | None
    answer_seconds: float | None
    # Contested at some point, whatever the review decided: a contest that happened stays counted.
    contested: bool = False


def item_outcome(item: Mapping[str, Any], order_status: str, contested: bool = False) -> str:
    """An item's outcome: the one the platform reported, else withdrawn, contested (the order was, whether the
    contest awaits review or was upheld) or no answer."""
    reported = item.get("outcome")
    if isinstance(reported, Mapping) and reported.get("outcome") in REPORTED:
        return str(reported["outcome"])
    if order_status == "withdrawn":
        return "withdrawn"
    if contested or order_status == "contested":
        return "contested"
    return "no_answer"


def legal_basis_label(basis: Mapping[str, Any] | None) -> str:
    """`act, article` as the order names them."""
    if not basis:
        return "unspecified"
    return f"{basis.get('act', '')}, {basis.get('article', '')}".strip(", ")


def from_row(row: Any) -> OrderFacts:
    """The facts of one joined (order view, SLA row) row."""
    doc: Mapping[str, Any] = row.document
    authority = doc.get("authority") or {}
    status = str(row.status)
    contested = doc.get("contested_at") is not None or status == "contested"
    return OrderFacts(
        order_id=row.id,
        issued_at=row.issued_at,
        authority_id=row.authority_id,
        authority_name=str(authority.get("name") or row.authority_id),
        category=row.category,
        legal_basis=legal_basis_label(doc.get("legal_basis")),
        platform_id=row.platform_id,
        status=status,
        item_outcomes=tuple(item_outcome(i, status, contested) for i in doc.get("items") or ()),
        sla_status=row.sla_status,
        answer_seconds=row.answer_seconds,
        contested=contested,
    )


def load(
    conn: Connection,
    start: datetime | None,
    end: datetime | None,
    *,
    authority: str | None = None,
    category: str | None = None,
    platform: str | None = None,
) -> list[OrderFacts]:
    """The facts of the orders issued in [start, end), optionally of one authority, category or platform."""
    o, s = orders, sla_orders
    stmt = (
        select(
            o.c.id,
            o.c.issued_at,
            o.c.authority_id,
            o.c.platform_id,
            o.c.category,
            o.c.status,
            o.c.document,
            s.c.status.label("sla_status"),
            s.c.answer_seconds,
        )
        .select_from(o.outerjoin(s, s.c.order_id == o.c.id))
        .order_by(o.c.issued_at, o.c.id)
    )
    stmt = filtered(stmt, o, start, end, authority=authority, category=category, platform=platform)
    return [from_row(r) for r in conn.execute(stmt)]


def filtered(
    stmt: Select[Any],
    table: Table,
    start: datetime | None,
    end: datetime | None,
    *,
    authority: str | None = None,
    category: str | None = None,
    platform: str | None = None,
) -> Select[Any]:
    """`stmt` narrowed to orders of `table` issued in [start, end), of one authority, category or platform."""
    if start is not None:
        stmt = stmt.where(table.c.issued_at >= start)
    if end is not None:
        stmt = stmt.where(table.c.issued_at < end)
    for column, value in (("authority_id", authority), ("category", category), ("platform_id", platform)):
        if value:
            stmt = stmt.where(table.c[column] == value)
    return stmt


def first_issued(conn: Connection) -> datetime | None:
    """When the first order was issued (None before any): the first month a report can be published for."""
    found: datetime | None = conn.execute(select(func.min(orders.c.issued_at))).scalar_one()
    return found
