"""REST routes for issuers (issue, withdraw, uphold), platforms (acknowledge, outcomes, contest) and readers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from services.http.deps import Admin, ContainerDep, Issuer, PlatformRep, Reader
from services.ledger.leaf import receipt
from services.orders.domain import AcceptDeclines, Acknowledge, Contest, OutcomeReport, ReportOutcomes, Uphold, Withdraw
from services.orders.schemas import (
    AcknowledgeIn,
    ContestIn,
    EventOut,
    IssueOrderIn,
    NoticeIn,
    OrderPage,
    OutcomesIn,
    ReviewIn,
    StatusFilter,
    UtcTime,
)
from services.orders.sla import SlaStatus
from shared.events import Category

router = APIRouter(prefix="/v1/orders", tags=["orders"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200, min_length=1)]


@router.post("", status_code=201, summary="Issue an order (issuer)")
def issue_order(
    body: IssueOrderIn, principal: Issuer, c: ContainerDep, response: Response, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Issue an order to a platform; a repeat with the same key or issuer_reference returns the first order."""
    order = body.to_order(principal.authority_id or "", principal.authority_name or "")
    document, created = c.orders.issue(principal, order, idempotency_key)
    response.headers["Location"] = f"/v1/orders/{document['id']}"
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return document


@router.get("", summary="List orders (own orders for issuers and platforms)")
def list_orders(
    principal: Reader,
    c: ContainerDep,
    status: StatusFilter | None = None,
    sla_status: SlaStatus | None = None,
    platform: Annotated[str | None, Query(max_length=36)] = None,
    category: Category | None = None,
    issued_from: UtcTime | None = None,
    issued_to: UtcTime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    """Newest first; follow `next_cursor` for the next page."""
    items, next_cursor = c.orders.list(
        principal,
        status=status,
        sla_status=sla_status,
        platform_id=platform,
        category=category,
        issued_from=issued_from,
        issued_to=issued_to,
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(items=items, next_cursor=next_cursor)


@router.get("/{order_id}", summary="One order")
def get_order(order_id: str, principal: Reader, c: ContainerDep) -> dict[str, Any]:
    """The order with its items, outcomes, status and deadline."""
    return c.orders.get(principal, order_id)


@router.get("/{order_id}/events", summary="The order's events with their ledger positions")
def order_events(order_id: str, principal: Reader, c: ContainerDep) -> list[EventOut]:
    """Every recorded fact about the order, oldest first."""
    return [
        EventOut(
            event_id=e.event_id,
            type=e.type,
            schema_version=e.schema_version,
            version=e.version,
            position=e.position,
            recorded_at=e.recorded_at,
            data=e.data,
            leaf_hash=receipt(e),
        )
        for e in c.orders.events(principal, order_id)
    ]


@router.post("/{order_id}/acknowledge", summary="Acknowledge receipt (platform)")
def acknowledge(
    order_id: str, principal: PlatformRep, c: ContainerDep, body: AcknowledgeIn | None = None
) -> dict[str, Any]:
    """'We have it.' Acknowledging an order never pushed counts as being notified now (through the inbox)."""
    return c.orders.act(principal, order_id, Acknowledge(note=body.note if body else None))


@router.post("/{order_id}/outcomes", summary="Report what was done, per item (platform)")
def report_outcomes(order_id: str, body: OutcomesIn, principal: PlatformRep, c: ContainerDep) -> dict[str, Any]:
    """removed, restricted, not_found, or declined with a reason; the order closes when every item has one."""
    command = ReportOutcomes(
        outcomes=tuple(
            OutcomeReport(item_id=o.item_id, outcome=o.outcome, actioned_at=o.actioned_at, reason=o.reason)
            for o in body.outcomes
        )
    )
    return c.orders.act(principal, order_id, command)


@router.post("/{order_id}/contest", summary="Dispute the order (platform)")
def contest(order_id: str, body: ContestIn, principal: PlatformRep, c: ContainerDep) -> dict[str, Any]:
    """Stops the SLA clock until the issuer upholds or withdraws the order."""
    return c.orders.act(principal, order_id, Contest(grounds=body.grounds, detail=body.detail))


@router.post("/{order_id}/uphold", summary="Uphold a contested order, or the items a platform declined (issuer)")
def uphold(order_id: str, body: ReviewIn, principal: Issuer, c: ContainerDep) -> dict[str, Any]:
    """The review found the order stands: after a contest the clock resumes; declined items are due again."""
    return c.orders.act(principal, order_id, Uphold(reason=body.reason))


@router.post("/{order_id}/declines/accept", summary="Accept the platform's declines (issuer)")
def accept_declines(order_id: str, body: ReviewIn, principal: Issuer, c: ContainerDep) -> dict[str, Any]:
    """The issuer accepts the declined items: the order closes as declined (a decline never counts as met)."""
    return c.orders.act(principal, order_id, AcceptDeclines(reason=body.reason))


@router.post("/{order_id}/notices", summary="Record a notice sent to the representative another way (admin)")
def record_notice(order_id: str, body: NoticeIn, principal: Admin, c: ContainerDep) -> dict[str, Any]:
    """E-mail, letter or other channel, with its evidence: the platform is notified now unless it already was."""
    return c.orders.record_notice(principal, order_id, body.channel, body.address, body.evidence)


@router.post("/{order_id}/withdraw", summary="Withdraw the order (issuer)")
def withdraw(order_id: str, body: ReviewIn, principal: Issuer, c: ContainerDep) -> dict[str, Any]:
    """Any time before the order is closed."""
    return c.orders.act(principal, order_id, Withdraw(reason=body.reason))
