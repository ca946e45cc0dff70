"""The report flattened: one record per row for CSV and the command line's table."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

from services.transparency.facts import OUTCOMES
from services.transparency.report import Figures, Report, Row

COLUMNS: tuple[str, ...] = (
    "period",
    "dimension",
    "group",
    "label",
    "suppressed",
    "provisional",
    "orders",
    "items",
    *(f"items_{o}" for o in OUTCOMES),
    "orders_contested",
    "orders_withdrawn",
    "sla_decided",
    "sla_met",
    "share_met",
    "answered",
    "median_answer_seconds",
    "p90_answer_seconds",
)
# A spreadsheet runs a cell that starts with one of these as a formula: such labels are quoted as text.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _figures(f: Figures | None) -> dict[str, Any]:
    if f is None:
        return {}
    flat: dict[str, Any] = {
        "orders": f.orders,
        "items": f.items,
        "orders_contested": f.orders_contested,
        "orders_withdrawn": f.orders_withdrawn,
        "sla_decided": f.sla_decided,
        "sla_met": f.sla_met,
        "share_met": f.share_met,
        "answered": f.answered,
        "median_answer_seconds": f.median_answer_seconds,
        "p90_answer_seconds": f.p90_answer_seconds,
    }
    flat.update({f"items_{o}": n for o, n in f.outcomes.items()})
    return flat


def document(report: Report) -> dict[str, Any]:
    """The report as the JSON the report route serves, without the answer's own time (`generated_at`): what a
    publication fixes and hashes, so the same figures always make the same bytes."""
    return {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "period": report.period,
        "group_by": report.group_by,
        "provisional": report.provisional,
        "min_cell": report.min_cell,
        "suppressed_cells": report.suppressed_cells,
        "suppression_rule": report.rule,
        "rows": [
            {
                "period": r.period,
                "dimension": report.group_by if r.dimension else None,
                "group": r.group,
                "label": r.label,
                "suppressed": r.suppressed,
                "provisional": r.provisional,
                "figures": None if r.figures is None else asdict(r.figures),
            }
            for r in report.rows
        ],
        "total": asdict(report.total),
    }


def _figures_of(doc: dict[str, Any] | None) -> Figures | None:
    return None if doc is None else Figures(**doc)


def rows_of(doc: dict[str, Any]) -> list[Row]:
    """The rows of a report document (`document`), as the report holds them."""
    return [
        Row(
            r["period"],
            r["dimension"],
            r["group"],
            r["label"],
            r["suppressed"],
            _figures_of(r["figures"]),
            r["provisional"],
        )
        for r in doc["rows"]
    ]


def total_of(doc: dict[str, Any]) -> Figures:
    """The range total of a report document."""
    total = _figures_of(doc["total"])
    assert total is not None  # a document always has its total
    return total


def records(report: Report) -> list[dict[str, Any]]:
    """Every row, then the range total, as flat records with the COLUMNS keys."""
    rows = [*report.rows, Row("total", None, None, None, False, report.total, report.provisional)]
    out = []
    for row in rows:
        record: dict[str, Any] = dict.fromkeys(COLUMNS)
        record.update(
            period=row.period,
            dimension=row.dimension,
            group=row.group,
            label=row.label,
            suppressed=row.suppressed,
            provisional=row.provisional,
            **_figures(row.figures),
        )
        out.append(record)
    return out


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else value


def to_csv(report: Report) -> str:
    """The report as CSV (a header line, one line per row, the total last)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for record in records(report):
        writer.writerow({k: _safe(v) for k, v in record.items()})
    return buffer.getvalue()


def _hours(seconds: Any) -> str:
    return "" if seconds is None else f"{seconds / 3600:.1f}h"


def to_table(report: Report) -> str:
    """The report as a plain-text table for a terminal."""
    head = ["period", "group", "orders", "items", *OUTCOMES, "met %", "median", "p90"]
    lines: list[list[str]] = []
    for r in records(report):
        group = "" if r["dimension"] is None else str(r["label"] or r["group"])
        if r["suppressed"]:
            lines.append([r["period"], group, "suppressed", *[""] * (len(head) - 3)])
            continue
        share = r["share_met"]
        lines.append(
            [
                r["period"],
                group,
                str(r["orders"]),
                str(r["items"]),
                *(str(r[f"items_{o}"]) for o in OUTCOMES),
                "" if share is None else f"{100 * share:.1f}",
                _hours(r["median_answer_seconds"]),
                _hours(r["p90_answer_seconds"]),
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    text = [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*line) for line in lines)]
    text.append(f"{report.suppressed_cells} cell(s) suppressed. {report.rule}")
    return "\n".join(text) + "\n"
