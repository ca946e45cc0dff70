"""The suppression rule as pure code: small cells withheld, and what is withheld under a total never less than k."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.transparency.facts import OrderFacts
from services.transparency.report import build, percentile, protect


def test_small_cells_and_their_complements() -> None:
    assert protect({"a": 10, "b": 7}, 5) == set()
    assert protect({"a": 3, "b": 2, "c": 10}, 5) == {"a", "b"}, "two small cells pool 5: enough"
    assert protect({"a": 3, "b": 10, "c": 12}, 5) == {"a", "b"}, "one small cell: the smallest other joins it"
    assert protect({"a": 1, "b": 1, "c": 1, "d": 50}, 5) == {"a", "b", "c", "d"}
    assert protect({"a": 0, "b": 9}, 5) == set(), "an empty cell is not a small one"


@given(st.dictionaries(st.text(max_size=3), st.integers(0, 30), max_size=8), st.integers(1, 10))
def test_what_is_withheld_is_every_small_cell_and_never_a_pool_under_k(counts: dict[str, int], k: int) -> None:
    hidden = protect(counts, k)
    assert {c for c, n in counts.items() if 0 < n < k} <= hidden
    pool = sum(counts[c] for c in hidden)
    assert pool == 0 or pool >= k or hidden == {c for c, n in counts.items() if n}


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0


def _facts(day: date, n: int, platform: str) -> list[OrderFacts]:
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    return [
        OrderFacts(
            f"{platform}{day}{k}",
            at,
            "mci",
            "Ministry",
            "fraud",
            "Act, 1",
            platform,
            "closed",
            ("removed",),
            "met",
            3600.0 * (k + 1),
        )
        for k in range(n)
    ]


def test_a_day_is_protected_against_its_whole_month_whatever_the_range() -> None:
    facts = _facts(date(2026, 3, 2), 7, "p") + _facts(date(2026, 3, 20), 2, "p")
    whole = build(facts, start=date(2026, 3, 1), end=date(2026, 3, 31), period="day", group_by=None, min_cell=5)
    part = build(facts, start=date(2026, 3, 1), end=date(2026, 3, 5), period="day", group_by=None, min_cell=5)
    hidden = lambda r: {row.period for row in r.rows if row.suppressed}  # noqa: E731
    # The 20th (2 orders) cannot hide alone under March's published total of 9: the 2nd is withheld with it, even
    # in a report that stops on the 5th, so no pair of reports isolates either day.
    assert hidden(whole) == {"2026-03-02", "2026-03-20"} and hidden(part) == {"2026-03-02"}
    month = build(facts, start=date(2026, 3, 1), end=date(2026, 3, 31), period="month", group_by=None, min_cell=5)
    assert month.rows[0].figures is not None and month.rows[0].figures.orders == 9
    assert month.rows[0].figures.median_answer_seconds == 3 * 3600.0
