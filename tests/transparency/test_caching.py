"""The public report's caching (ETag, Cache-Control, 304) and its provisional current period, on each backend."""

from __future__ import annotations

from datetime import date

from services.transparency.report import build, last_finished_day
from tests.support import Api
from tests.transparency.seed import project

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}  # the frozen clock's month (T0 is 2 March 2026)


def test_the_period_that_has_not_ended_is_provisional_and_the_others_are_not() -> None:
    made = build([], start=date(2026, 1, 1), end=date(2026, 3, 2), period="month", group_by=None, min_cell=5,
                 today=date(2026, 3, 2))  # fmt: skip
    assert [(r.period, r.provisional) for r in made.rows] == [("2026-01", False), ("2026-02", False), ("2026-03", True)]
    days = build([], start=date(2026, 3, 1), end=date(2026, 3, 2), period="day", group_by=None, min_cell=5,
                 today=date(2026, 3, 2))  # fmt: skip
    assert [r.provisional for r in days.rows] == [False, True] and days.provisional
    assert last_finished_day(date(2026, 3, 2), "month") == date(2026, 2, 28)
    assert last_finished_day(date(2026, 3, 2), "day") == date(2026, 3, 1)


def test_by_default_only_finished_periods_are_reported(api: Api) -> None:
    api.container.settings.transparency_min_cell = 1  # one order, shown
    api.issue()
    project(api)
    body = api.client.get("/v1/transparency/report").json()
    assert (body["from"], body["to"], body["provisional"]) == ("2025-03-01", "2026-02-28", False)
    assert body["total"]["orders"] == 0 and not any(r["provisional"] for r in body["rows"])
    this_month = api.client.get("/v1/transparency/report", params={"from": "2026-03-01"}).json()
    assert (this_month["to"], this_month["provisional"], this_month["total"]["orders"]) == ("2026-03-31", True, 1)
    daily = api.client.get("/v1/transparency/report", params={"period": "day"}).json()
    assert daily["to"] == "2026-03-01"


def test_an_etag_answers_304_until_the_report_changes(api: Api) -> None:
    api.container.settings.transparency_min_cell = 1
    api.issue(issuer_reference="CACHE-1")
    project(api)
    for path in ("/v1/transparency/report", "/v1/transparency/report.csv"):
        first = api.client.get(path, params=MARCH)
        assert first.status_code == 200
        tag = first.headers["etag"]
        assert tag.startswith('W/"') and first.headers["cache-control"] == "public, max-age=60"
        api.advance(minutes=1)  # a later `generated_at` is the same report
        again = api.client.get(path, params=MARCH, headers={"If-None-Match": tag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag)
        strong = api.client.get(path, params=MARCH, headers={"If-None-Match": f'"other", {tag.removeprefix("W/")}'})
        assert strong.status_code == 304
        finished = api.client.get(path, params={"from": "2026-02-01", "to": "2026-02-28"})
        assert finished.headers["cache-control"] == "public, max-age=300" and finished.headers["etag"] != tag
    csv = api.client.get("/v1/transparency/report.csv", params=MARCH)
    assert csv.text.splitlines()[0].split(",")[:6] == [
        "period",
        "dimension",
        "group",
        "label",
        "suppressed",
        "provisional",
    ]
    assert csv.text.splitlines()[1].startswith("2026-03,,,,no,yes,")
    json_tag = api.client.get("/v1/transparency/report", params=MARCH).headers["etag"]
    api.issue(issuer_reference="CACHE-2")
    project(api)
    changed = api.client.get("/v1/transparency/report", params=MARCH, headers={"If-None-Match": json_tag})
    assert changed.status_code == 200 and changed.headers["etag"] != json_tag
    assert changed.json()["total"]["orders"] == 2
