"""The public transparency report: aggregates only, small cells withheld, as JSON and as CSV (no API key)."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from services.http.deps import ContainerDep
from services.http.problems import problem_responses
from services.http.schemas.transparency import FiguresOut, ReportOut, RowOut
from services.transparency.render import to_csv
from services.transparency.report import Dimension, Figures, Period, Report
from services.transparency.service import make_report

router = APIRouter(prefix="/v1/transparency", tags=["transparency"])


def _figures(f: Figures) -> FiguresOut:
    return FiguresOut(**f.__dict__)


From = Annotated[date | None, Query(alias="from", description="first day (a monthly report starts on the 1st)")]
To = Annotated[date | None, Query(description="last day, inclusive (default today)")]
Grouping = Annotated[Dimension | None, Query(description="one dimension, monthly reports only")]


def _report(
    c: ContainerDep, start: From = None, to: To = None, period: Period = "month", group_by: Grouping = None
) -> Report:
    """The report the query asks for: one dependency, so that the JSON and CSV forms take the same parameters."""
    with c.read_db.read() as conn:
        return make_report(
            conn,
            today=c.clock.now().date(),
            start=start,
            end=to,
            period=period,
            group_by=group_by,
            min_cell=c.settings.transparency_min_cell,
        )


Made = Annotated[Report, Depends(_report)]
IfNoneMatch = Annotated[str | None, Header(description="an ETag from an earlier answer: 304 if still current")]

# Finished periods change only by late facts (an answer or contest after the period); the current one by every
# order. Shared caches (the proxy) may keep either for as long as a reader would not mind.
_MAX_AGE = {False: 300, True: 60}
_CACHED: dict[int | str, dict[str, Any]] = {
    304: {"description": "not modified: the report is still the one the ETag names"},
}


def _caching(report: Report, body: str, if_none_match: str | None) -> tuple[dict[str, str], bool]:
    """ETag and Cache-Control for an answer, and whether the reader's If-None-Match still names it (a 304).

    Weak: two answers with one tag differ in `generated_at` only (the tag is over everything else); If-None-Match
    compares weakly (RFC 9110, 13.1.2), so a tag sent back without its W/ matches too.
    """
    opaque = f'"{hashlib.sha256(body.encode()).hexdigest()[:32]}"'
    headers = {"ETag": f"W/{opaque}", "Cache-Control": f"public, max-age={_MAX_AGE[report.provisional]}"}
    given = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    return headers, opaque in given or "*" in given


@router.get(
    "/report",
    operation_id="transparency_report",
    summary="Aggregates per period, authority, category, legal basis or platform (public)",
    response_model=ReportOut,
    responses={**_CACHED, **problem_responses(400, 422)},
)
def report(made: Made, c: ContainerDep, response: Response, if_none_match: IfNoneMatch = None) -> ReportOut | Response:
    """Orders and items, outcome per item, share answered within the SLA, median and p90 time to answer.

    Finished periods only, unless `to` says otherwise; a row of the current period is marked provisional.
    """
    out = ReportOut(
        from_=made.start,
        to=made.end,
        period=made.period,
        group_by=made.group_by,
        provisional=made.provisional,
        generated_at=c.clock.now(),
        min_cell=made.min_cell,
        suppressed_cells=made.suppressed_cells,
        suppression_rule=made.rule,
        rows=[
            RowOut(
                period=r.period,
                dimension=made.group_by if r.dimension else None,
                group=r.group,
                label=r.label,
                suppressed=r.suppressed,
                provisional=r.provisional,
                figures=None if r.figures is None else _figures(r.figures),
            )
            for r in made.rows
        ],
        total=_figures(made.total),
    )
    headers, same = _caching(made, out.model_dump_json(exclude={"generated_at"}), if_none_match)
    if same:
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return out


@router.get(
    "/report.csv",
    operation_id="transparency_report_csv",
    summary="The same report as CSV (public)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "one line per row, the total last",
        },
        **_CACHED,
        **problem_responses(400, 422),
    },
)
def report_csv(made: Made, if_none_match: IfNoneMatch = None) -> Response:
    """One line per row; suppressed cells have `suppressed` = yes and empty figures."""
    name = f"transparency-{made.start.isoformat()}-{made.end.isoformat()}.csv"
    body = to_csv(made)
    headers, same = _caching(made, body, if_none_match)
    if same:
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
