"""REST routes of the SLA dashboard: the summary per group and the orders behind a status tile."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.http.deps import ROLE_CHECKED, ContainerDep, Dashboard
from services.http.problems import problem_responses
from services.http.schemas.orders import NUL_FREE, UtcTime
from services.orders.sla_clock import SlaStatus, remaining_seconds, status_at
from services.sla import queries
from services.sla.projection import rows_as_of
from shared.events import Category

router = APIRouter(prefix="/v1/sla", tags=["sla"])


class SlaGroup(BaseModel):
    """One group's figures: counts per SLA status, percent met, time to answer."""

    key: str | None
    total: int
    counts: dict[str, int]
    percent_met: float | None
    median_answer_seconds: float | None
    p90_answer_seconds: float | None
    answered: int


class SlaSummary(BaseModel):
    """The summary, as of now or of a past instant."""

    group_by: Literal["platform", "category", "authority"] | None
    as_of: datetime | None
    groups: list[SlaGroup]
    percent_met_counts: list[str]
    resolution: str


class SlaOrder(BaseModel):
    """An order's SLA row; `remaining_seconds` is negative once breached."""

    order_id: str
    platform_id: str
    authority_id: str
    category: str
    status: str
    issued_at: datetime
    notified_at: datetime | None
    deadline: datetime | None
    answered_at: datetime | None
    answer_seconds: float | None
    remaining_seconds: int | None


class SlaOrderPage(BaseModel):
    """A page of SLA rows sorted by deadline, and the cursor of the next page."""

    items: list[SlaOrder]
    next_cursor: str | None


@router.get(
    "/summary",
    summary="Counts per SLA status, percent met, median and p90 time to answer",
    responses={**ROLE_CHECKED, **problem_responses(400, 422)},
)
def sla_summary(
    principal: Dashboard,
    c: ContainerDep,
    group_by: Literal["platform", "category", "authority"] | None = None,
    as_of: UtcTime | None = None,
) -> SlaSummary:
    """Exact counts from the projection; with `as_of`, replayed from the events recorded by then."""
    with c.db.read() as conn:
        if as_of is None:
            groups = queries.summary(conn, principal, group_by)
        else:
            rows = rows_as_of(conn, c.store, c.policy, as_of)
            if principal.role == "issuer":
                rows = [r for r in rows if r["authority_id"] == principal.authority_id]
            groups = queries.summary_of_rows(rows, group_by)
    return SlaSummary(
        group_by=group_by,
        as_of=as_of,
        groups=[SlaGroup(**g) for g in groups],
        percent_met_counts=list(queries.DECIDED),
        resolution=queries.RESOLUTION,
    )


@router.get(
    "/orders",
    summary="The orders behind a dashboard tile, by deadline",
    responses={**ROLE_CHECKED, **problem_responses(400, 422)},
)
def sla_orders(
    principal: Dashboard,
    c: ContainerDep,
    sla_status: SlaStatus | None = None,
    platform: Annotated[str | None, Query(max_length=36, pattern=NUL_FREE)] = None,
    category: Category | None = None,
    authority: Annotated[str | None, Query(max_length=64, pattern=NUL_FREE)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400, pattern=NUL_FREE)] = None,
) -> SlaOrderPage:
    """Soonest deadline first (breached orders, most overdue, lead); follow `next_cursor`."""
    now = c.clock.now()
    with c.db.read() as conn:
        rows, next_cursor = queries.orders(
            conn,
            principal,
            status=sla_status,
            platform_id=platform,
            category=category,
            authority_id=authority,
            limit=limit,
            cursor=cursor,
        )
    items = []
    for r in rows:
        # As of now, by the same rules as the order document (`sla_clock`): a running clock moves with time.
        status = status_at(r["status"], r["deadline"], r["category"], c.policy, now)
        remaining = remaining_seconds(status, r["deadline"], r["clock_stopped_at"], now)
        fields = {k: v for k, v in r.items() if k in SlaOrder.model_fields}
        items.append(SlaOrder(**{**fields, "status": status}, remaining_seconds=remaining))
    return SlaOrderPage(items=items, next_cursor=next_cursor)
