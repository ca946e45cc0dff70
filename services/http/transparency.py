"""The public transparency report: aggregates only, small cells withheld, as JSON and as CSV (no API key)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

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
    with c.db.read() as conn:
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


@router.get(
    "/report",
    operation_id="transparency_report",
    summary="Aggregates per period, authority, category, legal basis or platform (public)",
    responses=problem_responses(400, 422),
)
def report(made: Made, c: ContainerDep) -> ReportOut:
    """Orders and items, outcome per item, share answered within the SLA, median and p90 time to answer."""
    return ReportOut(
        from_=made.start,
        to=made.end,
        period=made.period,
        group_by=made.group_by,
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
                figures=None if r.figures is None else _figures(r.figures),
            )
            for r in made.rows
        ],
        total=_figures(made.total),
    )


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
        **problem_responses(400, 422),
    },
)
def report_csv(made: Made) -> Response:
    """One line per row; suppressed cells have `suppressed` = yes and empty figures."""
    name = f"transparency-{made.start.isoformat()}-{made.end.isoformat()}.csv"
    return Response(
        to_csv(made),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
