"""The public report on each backend: its figures equal counts made from the events themselves, small cells are
withheld (with complementary cells, so no total gives one away), and nothing personal ever appears."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import cli
from shared.eventstore import RecordedEvent
from tests.builders import T0
from tests.support import Api
from tests.transparency.seed import REASONS, REP_NAME, SECRET_NAME, Seeded, project, seed

OUTCOMES = ("removed", "restricted", "not_found", "declined", "contested", "withdrawn", "no_answer")
MIN_CELL = 5


def seed_more(api: Api) -> Seeded:
    """The shared seed (11 orders, 2-4 March 2026) plus six `drugs` orders to platform A, answered in an hour."""
    seeded = seed(api)
    for n in range(6):
        r = api.issue(issuer_reference=f"DRUGS-{n}", category="drugs", items=[{"url": f"https://drugs.example/{n}"}])
        assert r.status_code == 201, r.text
        oid = seeded.ids[f"drugs{n}"] = r.json()["id"]
        seeded.urls.append(f"https://drugs.example/{n}")
        assert api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={}).status_code == 200
    for n in range(6):
        oid = seeded.ids[f"drugs{n}"]
        api.advance(minutes=10)
        body = {"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": api.clock.now().isoformat()}]}
        assert api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body).status_code == 200
    project(api)
    return seeded


# ------------------------------------------------------------------------------ counts straight from the events


def all_events(api: Api) -> list[RecordedEvent]:
    found, after = [], 0
    with api.container.db.read() as conn:
        while batch := api.container.store.read_all(conn, after=after, limit=1000):
            found += batch
            after = batch[-1].position or after
    return found


def expected_orders(api: Api) -> dict[str, dict[str, Any]]:
    """What each order's events say, worked out here from the raw event data (not through the domain or any view)."""
    now = api.clock.now()
    orders: dict[str, dict[str, Any]] = {}
    for e in sorted(all_events(api), key=lambda e: (e.stream_id, e.version)):
        if not e.type.startswith("order."):
            continue
        d = e.data
        if e.type == "order.issued":
            orders[e.stream_id] = {
                "issued_at": datetime.fromisoformat(d["issued_at"]),
                "authority": d["authority"]["id"],
                "category": d["category"],
                "legal_basis": f"{d['legal_basis']['act']}, {d['legal_basis']['article']}",
                "platform": d["platform_id"],
                "items": [i["item_id"] for i in d["items"]],
                "outcomes": {},
                "state": "open",
                "contested": False,
                "notified_at": None,
            }
            continue
        o = orders[e.stream_id]
        if e.type == "order.delivered":
            o["notified_at"] = datetime.fromisoformat(d["notified_at"])
        elif e.type == "order.item_outcome_reported":
            o["outcomes"][d["item_id"]] = (
                d["outcome"],
                datetime.fromisoformat(d["actioned_at"]),
                datetime.fromisoformat(d["reported_at"]),
            )
        elif e.type in ("order.contested", "order.withdrawn", "order.closed"):
            o["state"] = e.type.removeprefix("order.")
            o["contested"] = o["contested"] or e.type == "order.contested"
        elif e.type == "order.upheld":
            o["state"] = "open"
    for o in orders.values():
        state, outcomes = o["state"], o["outcomes"]
        o["item_outcomes"] = [
            outcomes[i][0]
            if i in outcomes
            else "withdrawn"
            if state == "withdrawn"
            else "contested"
            if o["contested"]
            else "no_answer"
            for i in o["items"]
        ]
        deadline = o["notified_at"] + timedelta(hours=24) if o["notified_at"] else None  # the seed upholds no contest
        answered = len(outcomes) == len(o["items"])
        o["answer_seconds"] = (
            (max(r for _, _, r in outcomes.values()) - o["notified_at"]).total_seconds() if answered else None
        )
        on_time = answered and deadline is not None and max(a for _, a, _ in outcomes.values()) <= deadline
        o["decided"] = state == "closed" or (state == "open" and deadline is not None and now > deadline)
        o["met"] = state == "closed" and on_time
        o["has_declined"] = "declined" in o["item_outcomes"]
    return orders


def nearest_rank(values: list[float], share: float) -> float | None:
    return round(sorted(values)[math.ceil(share * len(values)) - 1], 3) if values else None


def expected_figures(orders: list[dict[str, Any]], reported_met: int) -> dict[str, Any]:
    answers = [o["answer_seconds"] for o in orders if o["answer_seconds"] is not None]
    enough = len(answers) >= MIN_CELL
    # A closed order with a declined item meets the SLA today; the SLA work in flight may give it a `declined`
    # status instead (decided, never met). Either reading is accepted, nothing in between.
    met_strict = sum(1 for o in orders if o["met"] and not o["has_declined"])
    met_loose = sum(1 for o in orders if o["met"])
    assert reported_met in (met_strict, met_loose)
    decided = sum(1 for o in orders if o["decided"])
    return {
        "orders": len(orders),
        "items": sum(len(o["items"]) for o in orders),
        "outcomes": {k: sum(o["item_outcomes"].count(k) for o in orders) for k in OUTCOMES},
        "orders_contested": sum(1 for o in orders if o["contested"]),
        "orders_withdrawn": sum(1 for o in orders if o["state"] == "withdrawn"),
        "sla_decided": decided,
        "sla_met": reported_met,
        "share_met": round(reported_met / decided, 4) if decided else None,
        "answered": len(answers),
        "median_answer_seconds": nearest_rank(answers, 0.5) if enough else None,
        "p90_answer_seconds": nearest_rank(answers, 0.9) if enough else None,
    }


def report(api: Api, **params: str) -> dict[str, Any]:
    r = api.client.get("/v1/transparency/report", params={"from": "2026-03-01", "to": "2026-03-31", **params})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_figures_equal_counts_made_from_the_events(api: Api) -> None:
    seed_more(api)
    orders = expected_orders(api)
    assert len(orders) == 17
    march = [o for o in orders.values() if o["issued_at"].strftime("%Y-%m") == "2026-03"]

    monthly = report(api)
    [row] = [r for r in monthly["rows"] if r["period"] == "2026-03"]
    assert row["figures"] == expected_figures(march, row["figures"]["sla_met"])
    assert row["figures"]["outcomes"]["removed"] > 0 and row["figures"]["answered"] >= MIN_CELL
    assert monthly["total"] == row["figures"], "the range total is the published months added up"

    for dimension in ("platform", "category", "authority", "legal_basis"):
        cells = [r for r in report(api, group_by=dimension)["rows"] if r["dimension"] == dimension]
        published = [c for c in cells if not c["suppressed"]]
        # Two authorities (15 and 2 orders): the small one cannot hide alone, so both are withheld.
        assert bool(published) == (dimension != "authority"), dimension
        for cell in published:
            members = [o for o in march if o[dimension] == cell["group"]]
            assert cell["figures"] == expected_figures(members, cell["figures"]["sla_met"]), (dimension, cell["group"])

    daily = report(api, period="day")
    [mar4] = [r for r in daily["rows"] if r["period"] == "2026-03-04"]
    members = [o for o in march if o["issued_at"].date().isoformat() == "2026-03-04"]
    assert len(members) == 8 and mar4["figures"] == expected_figures(members, mar4["figures"]["sla_met"])


def _check_no_total_reveals_a_cell(rep: dict[str, Any], parent_of: Any) -> None:
    """Every published total minus its published cells leaves nothing, or a pool of at least MIN_CELL orders."""
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    totals = {}
    for r in rep["rows"]:
        if r["dimension"] is None and rep["period"] == "month":
            totals[r["period"]] = r
        key = parent_of(r)
        if key is not None:
            children[key].append(r)
    for key, cells in children.items():
        for c in cells:
            if c["suppressed"]:
                assert c["figures"] is None
        parent = totals.get(key)
        if parent is None or parent["suppressed"]:
            assert all(c["suppressed"] for c in cells if c["figures"] is None or c["figures"]["orders"])
            continue
        pool = parent["figures"]["orders"] - sum(c["figures"]["orders"] for c in cells if not c["suppressed"])
        assert pool == 0 or pool >= MIN_CELL, (key, pool)
        assert not any(c["suppressed"] for c in cells) or pool >= MIN_CELL


def test_small_cells_are_withheld_and_no_total_gives_one_away(api: Api) -> None:
    seed_more(api)
    by_platform = {r["label"]: r for r in report(api, group_by="platform")["rows"] if r["dimension"]}
    assert not by_platform["A"]["suppressed"] and by_platform["A"]["figures"]["orders"] == 10
    assert by_platform["B"]["suppressed"] and by_platform["B"]["figures"] is None, "4 orders: under the threshold"
    assert by_platform["C"]["suppressed"]
    by_category = {r["group"]: r for r in report(api, group_by="category")["rows"] if r["dimension"]}
    assert by_category["child_cyberbullying"]["figures"]["orders"] == 7
    assert by_category["extremism"]["suppressed"] and by_category["fraud"]["suppressed"]
    # fraud (3) and extremism (1) pool only 4 orders: the smallest published cell (drugs, 6) is withheld beside them.
    assert by_category["drugs"]["suppressed"], "complementary suppression"
    daily = {r["period"]: r for r in report(api, period="day")["rows"]}
    assert daily["2026-03-03"]["suppressed"] and daily["2026-03-02"]["suppressed"], "4 orders, then 5 beside them"
    assert not daily["2026-03-04"]["suppressed"]
    assert report(api, period="day")["total"]["orders"] == 8, "the total adds up published days only"

    month_of = lambda r: r["period"] if r["dimension"] else None  # noqa: E731
    for dimension in ("platform", "category", "authority", "legal_basis"):
        rep = report(api, group_by=dimension)
        assert rep["suppressed_cells"] == sum(r["suppressed"] for r in rep["rows"])
        _check_no_total_reveals_a_cell(rep, month_of)
    month = report(api)["rows"][0]
    day_rows = report(api, period="day")["rows"]
    published_days = sum(r["figures"]["orders"] for r in day_rows if not r["suppressed"])
    assert month["figures"]["orders"] - published_days >= MIN_CELL

    api.container.settings.transparency_min_cell = 1  # configurable: with 1, nothing is withheld
    assert report(api, group_by="platform")["suppressed_cells"] == 0


def test_no_url_reason_or_name_ever_appears(api: Api) -> None:
    seeded = seed_more(api)
    outputs = []
    for params in [
        {},
        {"period": "day"},
        *({"group_by": d} for d in ("platform", "category", "authority", "legal_basis")),
    ]:
        for path in ("/v1/transparency/report", "/v1/transparency/report.csv"):
            r = api.client.get(path, params={"from": "2026-03-01", "to": "2026-03-31", **params})
            assert r.status_code == 200, r.text
            outputs.append(r.text)
    api.container.settings.transparency_min_cell = 1  # even with every cell shown
    outputs.append(json.dumps(report(api, group_by="legal_basis")))
    everything = "\n".join(outputs)
    forbidden = [*seeded.urls, "https://", "social.example", REASONS, "Uralsk", SECRET_NAME, "Qwertyuly", REP_NAME,
                 "rep-c@example.kz", "sent in error", "satire", "lawful speech", *seeded.ids.values()]  # fmt: skip
    for text in forbidden:
        assert text not in everything, text
    assert "Law on Mass Media, 18-1" in everything and "suppressed" in everything


def test_bad_requests_are_problems(api: Api) -> None:
    for params, status in [
        ({"from": "2026-03-10", "to": "2026-03-01"}, 422),
        ({"period": "day", "group_by": "platform"}, 422),
        ({"group_by": "colour"}, 422),
        ({"period": "day", "from": "2024-01-01", "to": "2026-03-01"}, 422),
        ({"from": "yesterday"}, 422),
    ]:
        for path in ("/v1/transparency/report", "/v1/transparency/report.csv"):
            r = api.client.get(path, params=params)
            assert r.status_code == status, (params, r.text)
            assert r.headers["content-type"] == "application/problem+json"
    csv = api.client.get("/v1/transparency/report.csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("period,dimension,group")
    spec = api.client.get("/openapi.json").json()["paths"]
    assert spec["/v1/transparency/report"]["get"]["operationId"] == "transparency_report"
    assert "application/problem+json" in spec["/v1/transparency/report"]["get"]["responses"]["422"]["content"]


def test_the_command_prints_the_same_report(
    api: Api, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_more(api)
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", db_url)
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp_path / "ledger.key"))
    out = tmp_path / "report.csv"
    result = CliRunner().invoke(
        cli, ["report", "--from", "2026-03-01", "--to", "2026-03-31", "--group-by", "platform", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["period", "group", "orders", "items"]
    [march] = [line for line in lines if line.startswith("2026-03 ") and line.split()[1] == "17"]
    assert [line.split()[:3] for line in lines if line.startswith("2026-03  ") and "suppressed" in line]
    assert "cell(s) suppressed" in lines[-2] and lines[-1] == f"CSV written to {out}" and march
    api_csv = api.client.get(
        "/v1/transparency/report.csv", params={"from": "2026-03-01", "to": "2026-03-31", "group_by": "platform"}
    ).text
    # The same rows as the API (the clock differs: the command's is the wall clock, so SLA states may have moved).
    assert [r.split(",")[:5] for r in out.read_text().splitlines()] == [r.split(",")[:5] for r in api_csv.splitlines()]


def test_a_contest_that_happened_stays_counted_and_visible_after_its_review(api: Api) -> None:
    api.clock.set(T0)
    ids = []
    for n in range(MIN_CELL):  # a published cell
        r = api.issue(issuer_reference=f"CONTEST-{n}")
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        assert api.call("POST", f"/v1/orders/{ids[-1]}/acknowledge", "platform_a", json={}).status_code == 200
    upheld, withdrawn = ids[0], ids[1]
    api.advance(hours=1)
    contested_at = api.clock.now()
    for oid in (upheld, withdrawn):
        body = {"grounds": "not_illegal", "detail": "satire of a public figure"}
        assert api.call("POST", f"/v1/orders/{oid}/contest", "platform_a", json=body).status_code == 200
    api.advance(hours=2)
    r = api.call("POST", f"/v1/orders/{upheld}/uphold", "issuer", json={"reason": "the content is illegal"})
    assert r.status_code == 200, r.text
    r = api.call("POST", f"/v1/orders/{withdrawn}/withdraw", "issuer", json={"reason": "withdrawn on review"})
    assert r.status_code == 200, r.text
    project(api)

    document = api.call("GET", f"/v1/orders/{upheld}", "auditor").json()
    assert document["status"] == "acknowledged" and document["sla_status"] == "on_track"
    assert datetime.fromisoformat(document["contested_at"]) == contested_at
    assert datetime.fromisoformat(document["upheld_at"]) == api.clock.now()
    gone = api.call("GET", f"/v1/orders/{withdrawn}", "auditor").json()
    assert datetime.fromisoformat(gone["contested_at"]) == contested_at

    [row] = [r for r in report(api)["rows"] if r["period"] == "2026-03"]
    figures = row["figures"]
    assert figures["orders"] == MIN_CELL and figures["orders_contested"] == 2 and figures["orders_withdrawn"] == 1
    # The upheld order's two items await an answer after a contest; the withdrawn order's are withdrawn.
    assert figures["outcomes"]["contested"] == 2 and figures["outcomes"]["withdrawn"] == 2
