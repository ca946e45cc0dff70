"""The SLA projection on each backend: rebuild equals live, counts equal a GROUP BY, time moves statuses, the API."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from services.sla.projection import BUCKET_GROWTH
from services.sla.tables import sla_answer_histogram, sla_counts, sla_orders
from shared.projections import rebuild
from tests.support import Api


def project(api: Api) -> None:
    api.container.sequencer.catch_up()
    api.container.projections.run_once()


def table(api: Api, t: Any) -> list[dict[str, Any]]:
    with api.container.db.read() as conn:
        return sorted((dict(r._mapping) for r in conn.execute(select(t))), key=lambda r: str(sorted(r.items())))


def counts_by_group_by(api: Api) -> Counter[tuple[str, str, str]]:
    """What `sla_counts` must hold, counted straight from the rows."""
    expected: Counter[tuple[str, str, str]] = Counter()
    for r in table(api, sla_orders):
        a, p, c = r["authority_id"], r["platform_id"], r["category"]
        for cell in [("all", ""), ("platform", p), ("category", c), ("authority", a), ("authority|platform", f"{a}|{p}"),
                     ("authority|category", f"{a}|{c}")]:  # fmt: skip
            expected[(*cell, r["status"])] += 1
    return expected


def stored_counts(api: Api) -> Counter[tuple[str, str, str]]:
    return Counter({(r["dimension"], r["key"], r["status"]): r["n"] for r in table(api, sla_counts) if r["n"]})


def mixed_workload(api: Api) -> dict[str, str]:
    """Orders in every reachable state, across two platforms and two authorities."""
    ids: dict[str, str] = {}

    def issue(name: str, who: str = "issuer", platform: str | None = None) -> str:
        r = api.issue(who=who, platform=platform, issuer_reference=f"W-{name}")
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
        return ids[name]

    issue("awaiting")
    acked = issue("acked", platform=api.platform_b)
    api.call("POST", f"/v1/orders/{acked}/acknowledge", "platform_b", json={})
    met = issue("met")
    api.call("POST", f"/v1/orders/{met}/acknowledge", "platform_a", json={})
    api.advance(hours=2)
    items = api.call("GET", f"/v1/orders/{met}", "admin").json()["items"]
    outcomes = [
        {"item_id": i["item_id"], "outcome": "removed", "actioned_at": api.clock.now().isoformat()} for i in items
    ]
    assert api.call("POST", f"/v1/orders/{met}/outcomes", "platform_a", json={"outcomes": outcomes}).status_code == 200
    contested = issue("contested", who="issuer2")
    api.call(
        "POST", f"/v1/orders/{contested}/contest", "platform_a", json={"grounds": "not_illegal", "detail": "satire"}
    )
    withdrawn = issue("withdrawn")
    api.call("POST", f"/v1/orders/{withdrawn}/withdraw", "issuer", json={"reason": "issued in error"})
    late = issue("late", platform=api.platform_b)
    api.call("POST", f"/v1/orders/{late}/acknowledge", "platform_b", json={})
    return ids


def test_the_rebuilt_projection_equals_the_live_one_row_for_row(api: Api) -> None:
    mixed_workload(api)
    project(api)
    api.advance(hours=20)  # the acknowledged orders go at risk by time alone
    with api.container.db.transaction() as conn:
        assert api.container.sla.advance(conn, api.clock.now()) >= 2
    project(api)
    live = {t.name: table(api, t) for t in (sla_orders, sla_counts, sla_answer_histogram)}
    assert len(live["sla_orders"]) == 6
    assert {r["status"] for r in live["sla_orders"]} >= {
        "awaiting_delivery",
        "at_risk",
        "met",
        "contested",
        "withdrawn",
    }
    assert stored_counts(api) == counts_by_group_by(api)

    applied = rebuild(api.container.db, api.container.store, api.container.sla)

    assert applied > 0
    rebuilt = {t.name: table(api, t) for t in (sla_orders, sla_counts, sla_answer_histogram)}
    live["sla_counts"] = [r for r in live["sla_counts"] if r["n"]]  # a counter that went to zero may stay
    rebuilt["sla_counts"] = [r for r in rebuilt["sla_counts"] if r["n"]]
    assert rebuilt == live


def test_time_alone_moves_on_track_to_at_risk_to_breached_and_the_counts_follow(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    project(api)
    status = lambda: {r["order_id"]: r["status"] for r in table(api, sla_orders)}[oid]  # noqa: E731
    assert status() == "on_track"
    for hours, expected in [(17.9, "on_track"), (0.2, "at_risk"), (5.8, "at_risk"), (0.2, "breached")]:
        api.advance(hours=hours)
        with api.container.db.transaction() as conn:
            api.container.sla.advance(conn, api.clock.now())
        assert status() == expected, f"after {hours} more hours"
        assert stored_counts(api) == counts_by_group_by(api)


def test_summary_counts_percent_met_and_answer_times(api: Api) -> None:
    ids = mixed_workload(api)
    api.advance(hours=30)
    with api.container.db.transaction() as conn:
        api.container.sla.advance(conn, api.clock.now())
    project(api)
    summary = api.call("GET", "/v1/sla/summary", "auditor").json()
    [everything] = summary["groups"]
    assert everything["total"] == 6
    assert everything["counts"]["met"] == 1 and everything["counts"]["breached"] == 2
    assert everything["percent_met"] == 33.33, "met / (met + met_late + breached + declined)"
    assert everything["answered"] == 1
    assert 2 * 3600 / BUCKET_GROWTH <= everything["median_answer_seconds"] <= 2 * 3600 * BUCKET_GROWTH
    by_platform = {g["key"]: g for g in api.call("GET", "/v1/sla/summary?group_by=platform", "admin").json()["groups"]}
    assert set(by_platform) == {api.platform_a, api.platform_b}
    assert by_platform[api.platform_b]["counts"]["breached"] == 2
    own = api.call("GET", "/v1/sla/summary?group_by=platform", "issuer2").json()["groups"]
    assert [(g["key"], g["total"]) for g in own] == [(api.platform_a, 1)], "an issuer sees its own orders only"
    assert api.call("GET", "/v1/sla/summary", "platform_a").status_code == 403
    assert api.call("GET", "/v1/sla/summary?group_by=colour", "admin").status_code == 422
    assert ids


def test_summary_as_of_answers_as_the_service_knew_it_then(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    before = api.clock.now()
    api.advance(hours=1)
    api.call("POST", f"/v1/orders/{oid}/withdraw", "issuer", json={"reason": "annulled"})
    project(api)
    now = api.call("GET", "/v1/sla/summary", "auditor").json()["groups"][0]["counts"]
    then = api.call("GET", "/v1/sla/summary", "auditor", params={"as_of": before.isoformat()}).json()
    assert now["withdrawn"] == 1 and now["on_track"] == 0
    assert then["groups"][0]["counts"]["on_track"] == 1 and then["groups"][0]["counts"]["withdrawn"] == 0
    assert then["as_of"].startswith(before.strftime("%Y-%m-%dT%H:%M"))


def test_sla_orders_are_sorted_by_deadline_and_paged(api: Api) -> None:
    made = []
    for n in range(5):
        oid = api.issue(issuer_reference=f"P-{n}").json()["id"]
        api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
        made.append(oid)
        api.advance(minutes=10)
    api.issue(issuer_reference="P-undelivered")
    project(api)
    seen, cursor = [], None
    while True:
        page = api.call(
            "GET", "/v1/sla/orders", "auditor", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert [r["order_id"] for r in seen][:5] == made, "soonest deadline first"
    assert seen[-1]["deadline"] is None and len(seen) == 6
    on_track = api.call("GET", "/v1/sla/orders", "auditor", params={"sla_status": "on_track"}).json()["items"]
    assert len(on_track) == 5 and all(r["remaining_seconds"] > 0 for r in on_track)
    assert api.call("GET", "/v1/sla/orders", "auditor", params={"cursor": "nonsense!"}).status_code == 400
    assert api.call("GET", "/v1/sla/orders", "auditor", params={"sla_status": "sunny"}).status_code == 422
