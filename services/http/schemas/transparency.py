"""The HTTP shapes of the public transparency report."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from services.transparency.facts import OUTCOMES
from services.transparency.report import Dimension, Period


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
    provisional: bool = Field(description="the period has not ended: its figures still grow")
    figures: FiguresOut | None


class ReportOut(BaseModel):
    """The transparency report of a range."""

    from_: date = Field(serialization_alias="from")
    to: date
    period: Period
    group_by: Dimension | None
    provisional: bool = Field(description="the range holds the current, unfinished period")
    generated_at: datetime
    min_cell: int = Field(description="cells with fewer orders than this are suppressed")
    suppressed_cells: int
    suppression_rule: str
    rows: list[RowOut]
    total: FiguresOut = Field(description="the published period rows added up")
