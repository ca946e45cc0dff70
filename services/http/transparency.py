"""The public transparency report: aggregates only, small cells withheld, as JSON and as CSV (no API key)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from services.http.deps import ContainerDep
from services.http.problems import Problem, problem_responses
from services.transparency.facts import OUTCOMES
from services.transparency.render import to_csv
from services.transparency.report import Dimension, Figures, Period, Report, ReportError
from services.transparency.service import make_report

router = APIRouter(prefix="/v1/transparency", tags=["transparency"])


class FiguresOut(BaseModel):
    """A published cell's figures."""

    orders: int
    items: int
    outcomes: dict[str, int] = Field(description=f"items by outcome: {', '.join(OUTCOMES)}")
    orders_contested: int = Field(description="orders contested, awaiting review or reviewed (upheld or withdrawn)")
    orders_withdrawn: int
    sla_decided: int = Field(description="orders whose deadline is decided: answered, declined, or breached")
    sla_met: int = Field(description="orders fully answered within the SLA")
    share_met: float | None = Field(description="sla_met / sla_decided")
    answered: int = Field(description="orders with every item answered")
    median_answer_seconds: float | None = Field(description="from notification to the last item's answer")
    p90_answer_seconds: float | None


class RowOut(BaseModel):
    """A period's row (`dimension` null) or one group's cell within a period; no figures when suppressed."""

    period: str = Field(description="YYYY-MM, YYYY-MM-DD")
    dimension: Dimension | None
    group: str | None
    label: str | None
    suppressed: bool
    figures: FiguresOut | None


class ReportOut(BaseModel):
    """The transparency report of a range."""

    from_: date = Field(serialization_alias="from")
    to: date
    period: Period
    group_by: Dimension | None
    generated_at: datetime
    min_cell: int = Field(description="cells with fewer orders than this are suppressed")
    suppressed_cells: int
    suppression_rule: str
    rows: list[RowOut]
    total: FiguresOut = Field(description="the published period rows added up")


def _figures(f: Figures) -> FiguresOut:
    return FiguresOut(**f.__dict__)


def _report(c: Any, start: date | None, end: date | None, period: Period, group_by: Dimension | None) -> Report:
    try:
        with c.db.read() as conn:
            return make_report(
                conn,
                today=c.clock.now().date(),
                start=start,
                end=end,
                period=period,
                group_by=group_by,
                min_cell=c.settings.transparency_min_cell,
            )
    except ReportError as exc:
        raise Problem(422, exc.code, "Invalid report", str(exc)) from exc


From = Annotated[date | None, Query(alias="from", description="first day (a monthly report starts on the 1st)")]
To = Annotated[date | None, Query(description="last day, inclusive (default today)")]
Grouping = Annotated[Dimension | None, Query(description="one dimension, monthly reports only")]


@router.get(
    "/report",
    operation_id="transparency_report",
    summary="Aggregates per period, authority, category, legal basis or platform (public)",
    responses=problem_responses(400, 422),
)
def report(
    c: ContainerDep,
    start: From = None,
    to: To = None,
    period: Period = "month",
    group_by: Grouping = None,
) -> ReportOut:
    """Orders and items, outcome per item, share answered within the SLA, median and p90 time to answer."""
    made = _report(c, start, to, period, group_by)
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
def report_csv(
    c: ContainerDep,
    start: From = None,
    to: To = None,
    period: Period = "month",
    group_by: Grouping = None,
) -> Response:
    """One line per row; suppressed cells have `suppressed` = yes and empty figures."""
    made = _report(c, start, to, period, group_by)
    name = f"transparency-{made.start.isoformat()}-{made.end.isoformat()}.csv"
    return Response(
        to_csv(made),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
