"""The HTTP shapes of the SLA dashboard API: the summary per group and the orders behind a status tile."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


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
