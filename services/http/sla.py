"""REST routes of the SLA dashboard: the summary per group and the orders behind a status tile."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from services.http.deps import ROLE_CHECKED, ContainerDep, Dashboard
from services.http.problems import problem_responses
from services.http.schemas.orders import NUL_FREE, UtcTime
from services.http.schemas.sla import SlaGroup, SlaOrder, SlaOrderPage, SlaSummary
from services.orders.sla_clock import SlaStatus, remaining_seconds, status_at
from services.orders.visibility import visible
from services.sla import queries
from services.sla.projection import rows_as_of
from shared.events import Category

router = APIRouter(prefix="/v1/sla", tags=["sla"])


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
    with c.read_db.read() as conn:
        if as_of is None:
            groups = queries.summary(conn, principal, group_by)
        else:
            rows = rows_as_of(conn, c.store, c.policy, as_of)
            rows = [r for r in rows if visible(principal, r)]
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
    with c.read_db.read() as conn:
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
