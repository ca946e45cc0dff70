"""The report as the API and the CLI ask for it: load the facts of the whole months touched, label, aggregate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy import Connection

from services.registry import service as registry
from services.transparency import facts as facts_of
from services.transparency.errors import ReportError
from services.transparency.facts import OrderFacts
from services.transparency.report import Dimension, Period, Report, build, covering_months, last_finished_day


def _at(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def make_report(
    conn: Connection,
    *,
    today: date,
    start: date | None,
    end: date | None,
    period: Period = "month",
    group_by: Dimension | None = None,
    min_cell: int = 5,
) -> Report:
    """The report of [start, end]; the future is never reported, the current period is marked provisional.

    Default end: the last finished period (a published figure should not move under its reader), or today when
    `start` falls in the current period; default start: the twelve calendar months up to the end.
    """
    if end is None:
        finished = last_finished_day(today, period)
        end = today if start is not None and start > finished else finished
    end = min(end, today)
    start = start or date(end.year - (end.month < 12), (end.month % 12) + 1, 1)
    if start > end:
        raise ReportError("`from` is after `to` (or in the future)")
    first, after = covering_months(start, end)
    loaded = facts_of.load(conn, _at(first), _at(after))
    return build(
        loaded,
        start=start,
        end=end,
        period=period,
        group_by=group_by,
        min_cell=min_cell,
        label=labeller(conn, loaded),
        today=today,
    )


def labeller(conn: Connection, loaded: Sequence[OrderFacts]) -> Callable[[Dimension, str], str]:
    """How a group is named in a report: a platform by its registered name, an authority as its orders name it."""
    names = {p.id: p.name for p in registry.list_all(conn)}
    authorities = {f.authority_id: f.authority_name for f in loaded}

    def label(dimension: Dimension, key: str) -> str:
        if dimension == "platform":
            return str(names.get(key, key))
        if dimension == "authority":
            return authorities.get(key, key)
        return key

    return label
