"""The dashboard's overview on each backend: unfiltered it equals the SLA summary; filters narrow it; who may read."""

from __future__ import annotations

from tests.support import Api
from tests.transparency.seed import seed


def test_the_overview_equals_the_sla_summary_and_follows_its_filters(api: Api) -> None:
    seeded = seed(api)
    summary = api.call("GET", "/v1/sla/summary", "auditor").json()["groups"][0]
    by_platform = api.call("GET", "/v1/sla/summary?group_by=platform", "auditor").json()["groups"]
    r = api.call("GET", "/v1/dashboard/overview", "auditor")
    assert r.status_code == 200, r.text
    o = r.json()
    assert {k: v for k, v in o["tiles"].items() if k != "name"} == summary
    assert [{k: v for k, v in g.items() if k != "name"} for g in o["platforms"]] == by_platform
    assert [p["name"] for p in o["platforms"]] == ["A", "B", "C"]
    assert len(o["urgent"]) == o["urgent_total"] == summary["counts"]["at_risk"] + summary["counts"]["breached"]
    deadlines = [u["deadline"] for u in o["urgent"]]
    assert deadlines == sorted(deadlines) and o["urgent"][0]["remaining_seconds"] < 0
    assert sum(b["orders"] for b in o["answer_times"]) == summary["answered"]
    assert sum(d["orders"] for d in o["daily"]) == summary["total"] == 11
    assert sum(sum(d["outcomes"].values()) for d in o["daily"]) == 22, "every item of every order, by outcome"

    only_c = api.call("GET", "/v1/dashboard/overview", "auditor", params={"platform": seeded.platform_c}).json()
    assert [g["key"] for g in only_c["platforms"]] == [seeded.platform_c] and only_c["tiles"]["total"] == 3
    today = api.call("GET", "/v1/dashboard/overview", "auditor", params={"days": 1}).json()
    assert today["tiles"]["total"] == 2 and [d["day"] for d in today["daily"]] == ["2026-03-04"]
    ranged = api.call("GET", "/v1/dashboard/overview", "auditor", params={"from": "2026-03-02", "to": "2026-03-02"})
    assert ranged.json()["tiles"]["total"] == 5
    own = api.call("GET", "/v1/dashboard/overview", "issuer2").json()
    assert own["tiles"]["total"] == 2 and own["options"]["authorities"] == ["other"], "an issuer sees its own"
    assert api.call("GET", "/v1/dashboard/overview", "platform_a").status_code == 403
    assert api.call("GET", "/v1/dashboard/overview", None).status_code == 401
    assert api.call("GET", "/v1/dashboard/overview", "auditor", params={"category": "sunny"}).status_code == 422


def test_the_page_is_served_with_a_strict_policy(api: Api) -> None:
    page = api.client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/dashboard/dashboard.js"' in page.text and "<script>" not in page.text
    for asset, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        r = api.client.get(f"/dashboard/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert api.client.get("/dashboard/../pyproject.toml").status_code == 404
    assert api.client.get("/dashboard/index.html.bak").status_code == 404
    js = api.client.get("/dashboard/dashboard.js").text
    assert "sessionStorage" in js and "localStorage" not in js and "http://" not in js.replace(SVG_NS, "")


SVG_NS = "http://www.w3.org/2000/svg"
