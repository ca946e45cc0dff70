"""REST routes for issuers (issue, withdraw, uphold), platforms (acknowledge, outcomes, contest) and readers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from services.http.deps import (
    AUTHENTICATED,
    ROLE_CHECKED,
    Admin,
    ContainerDep,
    Issuer,
    OrderId,
    PlatformRep,
    Reader,
)
from services.http.problems import problem_responses
from services.http.responses import Documents, Validated
from services.http.schemas.orders import (
    NUL_FREE,
    AcknowledgeIn,
    ContestIn,
    EventOut,
    IssueOrderIn,
    NoticeIn,
    OrderOut,
    OrderPage,
    OutcomesIn,
    ReviewIn,
    StatusFilter,
    UtcTime,
)
from services.orders.domain import AcceptDeclines, Acknowledge, Contest, OutcomeReport, ReportOutcomes, Uphold, Withdraw
from services.orders.sla_clock import SlaStatus
from shared.events import Category

router = APIRouter(prefix="/v1/orders", tags=["orders"])

# Visible ASCII without surrounding spaces: what survives a trip through HTTP header parsing unchanged.
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"),
]

LOCATION = {"description": "The order's URL", "schema": {"type": "string"}}

# A command on one order: its id may be unknown (404), the order's rules may refuse it (409), the body may be
# malformed (400), too large (413), not JSON (415) or invalid (422), and the database may be busy (503).
ORDER_COMMAND = {**ROLE_CHECKED, **problem_responses(400, 404, 409, 413, 415, 422, 503)}
ORDER_READ = {**AUTHENTICATED, **problem_responses(400, 404, 422)}

# The hot routes answer a Response validated here once (services/http/responses.py), not a value FastAPI
# validates again; each still declares its response_model, which states the contract.
ORDER = Validated(OrderOut)
# The reads answer stored documents: each distinct one checked in full once, then only what the read recomputes
# (`services/orders/views.refresh`: the SLA status and remaining time as of now) and the page around them.
STORED = Documents(OrderOut, OrderPage, moving=("sla_status", "remaining_seconds"))


def command(path: str, summary: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """A command route on one order: POST, answers the order after it, with the problems of ORDER_COMMAND."""
    return router.post(f"/{{order_id}}/{path}", summary=summary, response_model=OrderOut, responses=ORDER_COMMAND)


@router.post(
    "",
    status_code=201,
    summary="Issue an order (issuer)",
    response_model=OrderOut,
    responses={
        201: {"description": "The order, issued", "headers": {"Location": LOCATION}},
        200: {
            "model": OrderOut,
            "description": "A repeat of an earlier request: the order it created",
            "headers": {"Location": LOCATION, "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}},
        },
        **ROLE_CHECKED,
        **problem_responses(400, 409, 413, 415, 422, 503),
    },
)
def issue_order(
    body: IssueOrderIn, principal: Issuer, c: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Issue an order to a platform; a repeat with the same key or issuer_reference returns the first order."""
    order = body.to_order(principal.authority_id or "", principal.authority_name or "")
    document, created = c.orders.issue(principal, order, idempotency_key)
    headers = {"Location": f"/v1/orders/{document['id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return ORDER.response(document, 201 if created else 200, headers)


@router.get(
    "",
    summary="List orders (own orders for issuers and platforms)",
    response_model=OrderPage,
    responses={**AUTHENTICATED, **problem_responses(400, 422)},
)
def list_orders(
    principal: Reader,
    c: ContainerDep,
    status: StatusFilter | None = None,
    sla_status: SlaStatus | None = None,
    platform: Annotated[str | None, Query(max_length=36, pattern=NUL_FREE)] = None,
    category: Category | None = None,
    issued_from: UtcTime | None = None,
    issued_to: UtcTime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, pattern=NUL_FREE, description="`next_cursor` of the previous page")
    ] = None,
) -> Response:
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
    return STORED.page(items, next_cursor=next_cursor)


@router.get("/{order_id}", summary="One order", response_model=OrderOut, responses=ORDER_READ)
def get_order(order_id: OrderId, principal: Reader, c: ContainerDep) -> Response:
    """The order with its items, outcomes, status and deadline."""
    return STORED.one(c.orders.get(principal, order_id))


@router.get(
    "/{order_id}/events",
    summary="The order's events with their ledger positions",
    response_model=list[EventOut],
    responses=ORDER_READ,
)
def order_events(order_id: OrderId, principal: Reader, c: ContainerDep) -> list[EventOut]:
    """Every recorded fact about the order, oldest first."""
    found = c.orders.events(principal, order_id)
    formats = c.ledger.leaf_formats()
    return [EventOut.of(e, formats) for e in found]


@command("acknowledge", "Acknowledge receipt (platform)")
def acknowledge_order(
    order_id: OrderId, principal: PlatformRep, c: ContainerDep, body: AcknowledgeIn | None = None
) -> Response:
    """'We have it.' Acknowledging an order never pushed counts as being notified now (through the inbox)."""
    return ORDER.response(c.orders.act(principal, order_id, Acknowledge(note=body.note if body else None)))


@command("outcomes", "Report what was done, per item (platform)")
def report_outcomes(order_id: OrderId, body: OutcomesIn, principal: PlatformRep, c: ContainerDep) -> Response:
    """removed, restricted, not_found, or declined with a reason; the order closes when every item has one."""
    command = ReportOutcomes(
        outcomes=tuple(
            OutcomeReport(item_id=o.item_id, outcome=o.outcome, actioned_at=o.actioned_at, reason=o.reason)
            for o in body.outcomes
        )
    )
    return ORDER.response(c.orders.act(principal, order_id, command))


@command("contest", "Dispute the order (platform)")
def contest_order(order_id: OrderId, body: ContestIn, principal: PlatformRep, c: ContainerDep) -> Response:
    """Stops the SLA clock until the issuer upholds or withdraws the order."""
    return ORDER.response(c.orders.act(principal, order_id, Contest(grounds=body.grounds, detail=body.detail)))


@command("uphold", "Uphold a contested order, or the items a platform declined (issuer)")
def uphold_order(order_id: OrderId, body: ReviewIn, principal: Issuer, c: ContainerDep) -> Response:
    """The review found the order stands: after a contest the clock resumes; declined items are due again."""
    return ORDER.response(c.orders.act(principal, order_id, Uphold(reason=body.reason)))


@command("declines/accept", "Accept the platform's declines (issuer)")
def accept_declines(order_id: OrderId, body: ReviewIn, principal: Issuer, c: ContainerDep) -> Response:
    """The issuer accepts the declined items: the order closes as declined (a decline never counts as met)."""
    return ORDER.response(c.orders.act(principal, order_id, AcceptDeclines(reason=body.reason)))


@command("notices", "Record a notice sent to the representative another way (admin)")
def record_notice(order_id: OrderId, body: NoticeIn, principal: Admin, c: ContainerDep) -> Response:
    """E-mail, letter or other channel, with its evidence: the platform is notified now unless it already was."""
    return ORDER.response(c.orders.record_notice(principal, order_id, body.channel, body.address, body.evidence))


@command("withdraw", "Withdraw the order (issuer)")
def withdraw_order(order_id: OrderId, body: ReviewIn, principal: Issuer, c: ContainerDep) -> Response:
    """Any time before the order is closed."""
    return ORDER.response(c.orders.act(principal, order_id, Withdraw(reason=body.reason)))
