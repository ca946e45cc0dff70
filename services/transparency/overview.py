"""The dashboard's overview for one filter: SLA tiles, platforms, urgent orders, answer times, outcomes per day.

Exact figures for signed-in readers (no suppression): the tiles and the platform table come from the same SLA rows
and the same summary code as `/v1/sla/summary`, so unfiltered they equal it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from services.orders.sla_clock import SLA_STATUSES, SlaPolicy, remaining_seconds, status_at
from services.orders.visibility import narrowed
from services.registry import service as registry
from services.sla.queries import summary_of_rows
from services.sla.tables import sla_orders
from services.transparency import facts as facts_of
from services.transparency.facts import OUTCOMES
from shared.auth import Principal
from shared.events import CATEGORIES

# Time-to-answer chart: upper bounds of its bars, in hours (the last bar is open-ended).
ANSWER_BARS_H: tuple[float, ...] = (1, 2, 4, 8, 12, 18, 24, 36, 48)
MAX_DAYS = 92  # the per-day chart's widest span (the most recent days when the period is longer)
URGENT = ("at_risk", "breached")


def _empty_group() -> dict[str, Any]:
    return {
        "key": None,
        "total": 0,
        "counts": dict.fromkeys(SLA_STATUSES, 0),
        "percent_met": None,
        "median_answer_seconds": None,
        "p90_answer_seconds": None,
        "answered": 0,
    }


def answer_bars(seconds: list[float]) -> list[dict[str, Any]]:
    """How many orders were answered within each band of hours."""
    bars, lower = [], 0.0
    for upper in (*ANSWER_BARS_H, None):
        n = sum(1 for s in seconds if s >= lower * 3600 and (upper is None or s < upper * 3600))
        label = f"≥{lower:g}h" if upper is None else f"{lower:g}–{upper:g}h"
        bars.append({"label": label, "lower_hours": lower, "upper_hours": upper, "orders": n})
        lower = upper or lower
    return bars


def overview(
    conn: Connection,
    principal: Principal,
    now: datetime,
    *,
    start: datetime | None,
    end: datetime | None,
    authority: str | None,
    category: str | None,
    platform: str | None,
    policy: SlaPolicy,
    urgent_limit: int = 100,
) -> dict[str, Any]:
    """Everything the dashboard shows for one filter, as of `now` (the tiles: as of the sweep, as the summary)."""
    authority, platform = narrowed(principal, authority, platform)
    stmt = facts_of.filtered(
        select(sla_orders), sla_orders, start, end, authority=authority, category=category, platform=platform
    )
    rows: list[Mapping[str, Any]] = [dict(r._mapping) for r in conn.execute(stmt)]
    [tiles] = summary_of_rows(rows, None) or [_empty_group()]
    names = {p.id: p.name for p in registry.list_all(conn)}
    platforms = [{**g, "name": names.get(g["key"], g["key"])} for g in summary_of_rows(rows, "platform")]
    urgent = sorted((r for r in rows if r["status"] in URGENT), key=lambda r: (r["deadline"], r["order_id"]))
    urgent_out = [
        {
            "order_id": r["order_id"],
            "platform_id": r["platform_id"],
            "platform": names.get(r["platform_id"], r["platform_id"]),
            "authority_id": r["authority_id"],
            "category": r["category"],
            "status": (status := status_at(r["status"], r["deadline"], r["category"], policy, now)),
            "issued_at": r["issued_at"],
            "deadline": r["deadline"],
            # The same rules as the order document and /v1/sla/orders (`sla_clock`).
            "remaining_seconds": remaining_seconds(status, r["deadline"], r["clock_stopped_at"], now),
        }
        for r in urgent[:urgent_limit]
    ]
    facts = facts_of.load(conn, start, end, authority=authority, category=category, platform=platform)
    daily: dict[str, Counter[str]] = {}
    orders_per_day: Counter[str] = Counter()
    for f in facts:
        day = f.issued_at.date().isoformat()
        daily.setdefault(day, Counter()).update(f.item_outcomes)
        orders_per_day[day] += 1
    first = (start or (facts[0].issued_at if facts else now)).date()
    last = ((end - timedelta(microseconds=1)) if end else now).date()
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    authorities = sorted({a for (a,) in conn.execute(select(sla_orders.c.authority_id).distinct())})
    own_authority, _ = narrowed(principal, None, None)
    if own_authority is not None:
        authorities = [a for a in authorities if a == own_authority]
    return {
        "as_of": now,
        "tiles": tiles,
        "platforms": platforms,
        "urgent": urgent_out,
        "urgent_total": len(urgent),
        "answer_times": answer_bars([r["answer_seconds"] for r in rows if r["answer_seconds"] is not None]),
        "sla_hours": policy.default_hours,
        "daily": [
            {
                "day": d.isoformat(),
                "orders": orders_per_day.get(d.isoformat(), 0),
                "outcomes": {k: daily.get(d.isoformat(), Counter()).get(k, 0) for k in OUTCOMES},
            }
            for d in days
        ],
        "options": {
            "platforms": [{"id": k, "name": v} for k, v in sorted(names.items(), key=lambda kv: kv[1])],
            "authorities": authorities,
            "categories": list(CATEGORIES),
        },
    }
