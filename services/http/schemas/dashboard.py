"""The HTTP shapes of the dashboard's overview."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

from services.http.schemas.sla import SlaGroup


class Group(SlaGroup):
    """SLA figures of all filtered orders or of one platform (those of /v1/sla/summary, with the platform's name)."""

    name: str | None = None


class UrgentOrder(BaseModel):
    """An at-risk or breached order; `remaining_seconds` is negative once breached."""

    order_id: str
    platform_id: str
    platform: str
    authority_id: str
    category: str
    status: str
    issued_at: datetime
    deadline: datetime
    remaining_seconds: float


class AnswerBar(BaseModel):
    """Orders answered within a band of hours after notification."""

    label: str
    lower_hours: float
    upper_hours: float | None
    orders: int


class Day(BaseModel):
    """Orders issued on a day, and their items by outcome."""

    day: date
    orders: int
    outcomes: dict[str, int]


class Option(BaseModel):
    """A platform a filter can choose."""

    id: str
    name: str


class Options(BaseModel):
    """What the filters can choose from."""

    platforms: list[Option]
    authorities: list[str]
    categories: list[str]


class Overview(BaseModel):
    """Everything the dashboard shows for one filter, as of `as_of`."""

    as_of: datetime
    tiles: Group
    platforms: list[Group]
    urgent: list[UrgentOrder]
    urgent_total: int
    answer_times: list[AnswerBar]
    sla_hours: float
    daily: list[Day]
    options: Options
