"""The dashboard: the page itself (static files) and the one overview query it needs beyond the SLA API."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from services.dashboard import STATIC
from services.http.deps import ContainerDep, Dashboard
from services.http.problems import Problem, problem_responses
from services.http.schemas.dashboard import Overview
from services.transparency.overview import overview as make_overview
from shared.events import Category

router = APIRouter(tags=["dashboard"])

# The page loads nothing from elsewhere and runs no inline script: a stolen key cannot be sent anywhere by markup.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@router.get("/dashboard", include_in_schema=False)
def page() -> FileResponse:
    """The SLA and transparency dashboard (asks for an auditor key, keeps it in session storage)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/dashboard/{asset}", include_in_schema=False)
def asset(asset: str) -> FileResponse:
    """The page's script and style sheet."""
    if asset not in ASSETS:
        raise Problem(404, "http", "Not Found", "no such file")
    return FileResponse(STATIC / asset, media_type=f"{ASSETS[asset]}; charset=utf-8", headers=SECURITY_HEADERS)


def _at(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@router.get(
    "/v1/dashboard/overview",
    operation_id="dashboard_overview",
    summary="The dashboard's figures for a period and filter (admin, auditor, issuer: own)",
    responses=problem_responses(400, 401, 403, 422),
)
def get_overview(
    principal: Dashboard,
    c: ContainerDep,
    days: Annotated[int | None, Query(ge=1, le=3660, description="the last N days, today included")] = None,
    start: Annotated[date | None, Query(alias="from", description="first day of issue")] = None,
    to: Annotated[date | None, Query(description="last day of issue, inclusive")] = None,
    authority: Annotated[str | None, Query(max_length=64)] = None,
    category: Category | None = None,
    platform: Annotated[str | None, Query(max_length=36)] = None,
) -> Overview:
    """SLA tiles, the platform table, at-risk and breached orders by deadline, time to answer, outcomes per day."""
    now = c.clock.now()
    begin = _at(now.date() - timedelta(days=days - 1)) if days else (_at(start) if start else None)
    end = _at(to + timedelta(days=1)) if to else None
    with c.read_db.read() as conn:
        made: dict[str, Any] = make_overview(
            conn,
            principal,
            now,
            start=begin,
            end=end,
            authority=authority,
            category=category,
            platform=platform,
            policy=c.policy,
        )
    return Overview.model_validate(made)
