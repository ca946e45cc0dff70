"""The transparency report: aggregates per period and group, with small-cell suppression. Pure code, no I/O.

Suppression rule (also stated in every report, `RULE`):

1. A cell with at least one but fewer than `min_cell` orders is withheld whole: every figure of it, not only the
   order count. Its key stays, marked `suppressed`.
2. Complementary suppression: whenever a published total sits above cells, the withheld cells under it must
   together hold at least `min_cell` orders, so subtracting the published cells from the total reveals only a pool
   of at least `min_cell` orders, never one cell. Until they do, the smallest published cell under the same total
   is withheld as well. The totals are the calendar month's (for daily rows and for the cells of a grouping);
   a month has no total above it.
3. A period whose own total is withheld has all its cells withheld.
4. The lattice is fixed: months and days are calendar periods (a daily row is protected against its whole
   calendar month, whatever range was asked for), groupings are one dimension at a time, and a grouping is
   published per month only. So the figures of any two reports are sums of the same cells, and comparing reports
   cannot isolate a withheld cell either.
5. The range total adds up the published period rows only.
6. Median and 90th-percentile times to answer are given only where at least `min_cell` orders were answered.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal, TypeVar

from services.transparency.errors import ReportError
from services.transparency.facts import OUTCOMES, OrderFacts

K = TypeVar("K", str, date)
Period = Literal["month", "day"]
MAX_PERIODS: dict[str, int] = {"month": 120, "day": 366}
Dimension = Literal["authority", "category", "legal_basis", "platform"]
DIMENSIONS: tuple[str, ...] = Dimension.__args__  # type: ignore[attr-defined]
# Answered, refused or out of time: the SLA statuses whose deadline has been decided (as the SLA summary counts).
DECIDED = frozenset({"met", "met_late", "breached", "declined"})
RULE = (
    "A cell with fewer than {k} orders is withheld whole (suppressed: true, no figures). Under every published total "
    "(a calendar month's, above its days and above the cells of a grouping) the withheld cells together hold at "
    "least {k} orders, else the smallest published cells beside them are withheld too; a withheld period withholds "
    "all its cells. Months and days are calendar periods and groupings one dimension per month, so no comparison of "
    "reports isolates a withheld cell. The range total adds up the published period rows only. Median and p90 time "
    "to answer need at least {k} answered orders."
)


@dataclass(frozen=True)
class Figures:
    """What a published cell says."""

    orders: int
    items: int
    outcomes: dict[str, int]
    orders_contested: int
    orders_withdrawn: int
    sla_decided: int
    sla_met: int
    share_met: float | None
    answered: int
    median_answer_seconds: float | None
    p90_answer_seconds: float | None


@dataclass(frozen=True)
class Row:
    """One period (group None) or one group within a period; `figures` is None when suppressed."""

    period: str
    dimension: str | None
    group: str | None
    label: str | None
    suppressed: bool
    figures: Figures | None
    provisional: bool = False  # the period has not ended: its figures still grow


@dataclass(frozen=True)
class Report:
    """The rows of a report, its range total, and how many cells were withheld."""

    start: date
    end: date
    period: Period
    group_by: Dimension | None
    min_cell: int
    rows: list[Row]
    total: Figures
    suppressed_cells: int
    # The months whose rows (and, for a one-month report, total) are their published report's: month -> revision.
    published: dict[str, int] = field(default_factory=dict)

    @property
    def provisional(self) -> bool:
        """Whether a row's period has not ended yet."""
        return any(r.provisional for r in self.rows)

    @property
    def rule(self) -> str:
        """The suppression rule in words."""
        return RULE.format(k=self.min_cell)


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of exact values (the smallest value with at least `share` of them at or below)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 3)


def figures(facts: Iterable[OrderFacts], min_cell: int) -> Figures:
    """The figures of a set of orders."""
    facts = list(facts)
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for f in facts:
        for outcome in f.item_outcomes:
            outcomes[outcome] += 1
    decided = [f for f in facts if f.sla_status in DECIDED]
    met = sum(1 for f in decided if f.sla_status == "met")
    answers = [f.answer_seconds for f in facts if f.answer_seconds is not None]
    enough = len(answers) >= min_cell
    return Figures(
        orders=len(facts),
        items=sum(len(f.item_outcomes) for f in facts),
        outcomes=outcomes,
        orders_contested=sum(1 for f in facts if f.contested),
        orders_withdrawn=sum(1 for f in facts if f.status == "withdrawn"),
        sla_decided=len(decided),
        sla_met=met,
        share_met=round(met / len(decided), 4) if decided else None,
        answered=len(answers),
        median_answer_seconds=percentile(answers, 0.5) if enough else None,
        p90_answer_seconds=percentile(answers, 0.9) if enough else None,
    )


def protect(counts: Mapping[K, int], min_cell: int) -> set[K]:
    """The cells to withhold under one published total: the small ones, plus complementary ones (rule 2)."""
    hidden = {key for key, n in counts.items() if 0 < n < min_cell}
    while hidden and sum(counts[key] for key in hidden) < min_cell:
        rest = sorted((n, str(key)) for key, n in counts.items() if n > 0 and key not in hidden)
        if not rest:
            break
        hidden.add(next(key for key in counts if str(key) == rest[0][1]))
    return hidden


def month_of(day: date) -> date:
    """The first day of the day's month."""
    return day.replace(day=1)


def next_month(month: date) -> date:
    """The first day of the next month."""
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def covering_months(start: date, end: date) -> tuple[date, date]:
    """[first day of start's month, first day after end's month): the whole calendar months a range touches."""
    return month_of(start), next_month(month_of(end))


def _periods(start: date, end: date, period: Period) -> list[date]:
    found, at = [], (month_of(start) if period == "month" else start)
    while at <= end:
        found.append(at)
        at = next_month(at) if period == "month" else at + timedelta(days=1)
    return found


def last_finished_day(today: date, period: Period) -> date:
    """The last day of the last period that has ended (a report's default end)."""
    return (month_of(today) if period == "month" else today) - timedelta(days=1)


def _label(period: Period, at: date) -> str:
    return at.strftime("%Y-%m") if period == "month" else at.isoformat()


def group_key(f: OrderFacts, dimension: Dimension) -> str:
    """The cell an order counts in along one dimension."""
    return {
        "authority": f.authority_id,
        "category": f.category,
        "legal_basis": f.legal_basis,
        "platform": f.platform_id,
    }[dimension]


def build(
    facts: Sequence[OrderFacts],
    *,
    start: date,
    end: date,
    period: Period,
    group_by: Dimension | None,
    min_cell: int,
    label: Callable[[Dimension, str], str] | None = None,
    today: date | None = None,
) -> Report:
    """The report of [start, end] (whole days; a monthly report covers the whole months touched).

    `facts` must hold every order issued in the calendar months the range touches (days are protected against
    their whole month). Rows of the period holding `today` are marked provisional.
    """
    if end < start:
        raise ReportError("`to` is before `from`")
    if group_by is not None and period != "month":
        raise ReportError("groupings are published per month only (a daily grouping could expose withheld cells)")
    if period == "month":
        start, end = month_of(start), next_month(month_of(end)) - timedelta(days=1)
    if len(_periods(start, end, period)) > MAX_PERIODS[period]:
        raise ReportError(f"at most {MAX_PERIODS[period]} {period}s per report")
    by_month: dict[date, list[OrderFacts]] = defaultdict(list)
    by_day: dict[date, list[OrderFacts]] = defaultdict(list)
    for f in facts:
        day = f.issued_at.date()
        by_month[month_of(day)].append(f)
        by_day[day].append(f)

    def month_hidden(month: date) -> bool:
        return 0 < len(by_month.get(month, ())) < min_cell

    hidden_days: set[date] = set()
    if period == "day":
        for month, in_month in by_month.items():
            days = {d: len(by_day[d]) for d in {f.issued_at.date() for f in in_month}}
            if month_hidden(month):
                hidden_days |= set(days)
            else:
                hidden_days |= protect(days, min_cell)

    rows: list[Row] = []
    published: list[OrderFacts] = []
    suppressed = 0
    for at in _periods(start, end, period):
        members = by_month.get(at, []) if period == "month" else by_day.get(at, [])
        hidden = month_hidden(at) if period == "month" else at in hidden_days
        name = _label(period, at)
        unfinished = today is not None and at == (month_of(today) if period == "month" else today)
        rows.append(Row(name, None, None, None, hidden, None if hidden else figures(members, min_cell), unfinished))
        suppressed += hidden
        if not hidden:
            published += members
        if group_by is None or not members:
            continue
        cells: dict[str, list[OrderFacts]] = defaultdict(list)
        for f in members:
            cells[group_key(f, group_by)].append(f)
        withheld = set(cells) if hidden else protect({k: len(v) for k, v in cells.items()}, min_cell)
        for key in sorted(cells):
            off = key in withheld
            shown = label(group_by, key) if label else key
            cell = None if off else figures(cells[key], min_cell)
            rows.append(Row(name, group_by, key, shown, off, cell, unfinished))
            suppressed += off
    return Report(
        start=start,
        end=end,
        period=period,
        group_by=group_by,
        min_cell=min_cell,
        rows=rows,
        total=figures(published, min_cell),
        suppressed_cells=suppressed,
    )
