"""Every reader of SLA time says the same thing: the order document, `/v1/sla/orders` and the dashboard overview
agree on each order's status and remaining seconds, for orders in every status, on each backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.orders.sla_clock import SLA_STATUSES
from tests.builders import T0
from tests.support import Api

H = 3600


def _ack(api: Api, oid: str) -> None:
    r = api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a", json={})
    assert r.status_code == 200, r.text


def _answer(api: Api, oid: str, outcome: str = "removed") -> None:
    items = api.call("GET", f"/v1/orders/{oid}", "admin").json()["items"]
    at = api.clock.now().isoformat()
    reason = {"reason": "lawful satire"} if outcome == "declined" else {}
    body = {"outcomes": [{"item_id": i["item_id"], "outcome": outcome, "actioned_at": at, **reason} for i in items]}
    r = api.call("POST", f"/v1/orders/{oid}/outcomes", "platform_a", json=body)
    assert r.status_code == 200, r.text


def _post(api: Api, oid: str, action: str, who: str, body: dict[str, Any]) -> None:
    r = api.call("POST", f"/v1/orders/{oid}/{action}", who, json=body)
    assert r.status_code == 200, r.text


def _orders_in_every_status(api: Api) -> dict[str, str]:
    """One order per SLA status (and one contested then upheld), as of T0 + 30 h; name -> order id."""
    ids: dict[str, str] = {}

    def issue(name: str) -> str:
        r = api.issue(issuer_reference=f"AGREE-{name}")
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
        return ids[name]

    api.clock.set(T0)
    _ack(api, issue("breached"))  # due T0 + 24 h
    _ack(api, issue("met_late"))
    _ack(api, issue("withdrawn"))
    _post(api, ids["withdrawn"], "withdraw", "issuer", {"reason": "issued in error"})
    api.clock.set(T0 + timedelta(hours=10))
    _ack(api, issue("at_risk"))  # due T0 + 34 h: 4 h left at T0 + 30 h, under the 25% share
    api.clock.set(T0 + timedelta(hours=26))
    _answer(api, ids["met_late"])  # two hours late
    api.clock.set(T0 + timedelta(hours=27))
    _ack(api, issue("contested"))
    _ack(api, issue("upheld"))
    _ack(api, issue("met"))
    _ack(api, issue("declined"))
    api.clock.set(T0 + timedelta(hours=28))
    for name in ("contested", "upheld"):
        _post(api, ids[name], "contest", "platform_a", {"grounds": "not_illegal", "detail": "satire"})
    _answer(api, ids["met"])  # 23 h to spare
    _answer(api, ids["declined"], "declined")  # answered, refused: awaits the issuer
    api.clock.set(T0 + timedelta(hours=29))
    _post(api, ids["upheld"], "uphold", "issuer", {"reason": "the content is illegal"})  # due moves 1 h later
    issue("awaiting_delivery")  # read by nobody: not notified
    api.clock.set(T0 + timedelta(hours=30))
    return ids


def _project_and_sweep(api: Api) -> None:
    api.container.sequencer.catch_up()
    api.container.projections.run_once()
    api.container.sweep.run_once()
    api.container.sequencer.catch_up()
    api.container.projections.run_once()  # the escalations the sweep recorded


def _views(api: Api, ids: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(order documents, /v1/sla/orders rows, overview urgent rows by id, overview tiles)."""
    documents = {oid: api.call("GET", f"/v1/orders/{oid}", "auditor").json() for oid in ids.values()}
    r = api.call("GET", "/v1/sla/orders", "auditor", params={"limit": 200})
    assert r.status_code == 200, r.text
    rows = {row["order_id"]: row for row in r.json()["items"]}
    r = api.call("GET", "/v1/dashboard/overview", "auditor")
    assert r.status_code == 200, r.text
    overview = r.json()
    return documents, rows, {u["order_id"]: u for u in overview["urgent"]}, overview["tiles"]


def test_the_three_readers_agree_for_every_status(api: Api) -> None:
    ids = _orders_in_every_status(api)
    _project_and_sweep(api)
    documents, rows, urgent, tiles = _views(api, ids)

    expected = {
        "awaiting_delivery": ("awaiting_delivery", None),
        "upheld": ("on_track", (27 + 24 + 1 - 30) * H),  # running again; notified at 27 h, paused 1 h
        "at_risk": ("at_risk", 4 * H),
        "breached": ("breached", -6 * H),
        "met": ("met", 23 * H),  # frozen at the answer: the time it had to spare
        "met_late": ("met_late", -2 * H),  # frozen at the answer: by how much it missed
        "declined": ("declined", 23 * H),  # answered (with a refusal): frozen too
        "contested": ("contested", 23 * H),  # paused at the contest: what is left when it resumes
        "withdrawn": ("withdrawn", None),
    }
    seen_statuses = set()
    for name, oid in ids.items():
        want = expected[name]
        doc, row = documents[oid], rows[oid]
        got = {
            "document": (doc["sla_status"], doc["remaining_seconds"]),
            "sla/orders": (row["status"], row["remaining_seconds"]),
        }
        if want[0] in ("at_risk", "breached"):
            got["overview"] = (urgent[oid]["status"], urgent[oid]["remaining_seconds"])
        else:
            assert oid not in urgent, name
        assert set(got.values()) == {want}, (name, got)
        seen_statuses.add(want[0])
    assert seen_statuses == set(SLA_STATUSES), "an order in every status"
    # The tiles count the same statuses, one order each.
    assert tiles["counts"] == dict.fromkeys(SLA_STATUSES, 1), tiles

    # Between sweeps the readers still agree: a running clock is read as of now by each of them.
    api.advance(hours=4, seconds=1)  # the at-risk order is now breached
    documents, rows, urgent, _ = _views(api, ids)
    for name, status, remaining in (
        ("at_risk", "breached", -1),
        ("upheld", "on_track", 18 * H - 1),
        ("breached", "breached", -10 * H - 1),
        ("met", "met", 23 * H),
        ("contested", "contested", 23 * H),
    ):
        oid = ids[name]
        assert (documents[oid]["sla_status"], documents[oid]["remaining_seconds"]) == (status, remaining), name
        assert (rows[oid]["status"], rows[oid]["remaining_seconds"]) == (status, remaining), name
        if status in ("at_risk", "breached"):
            assert (urgent[oid]["status"], urgent[oid]["remaining_seconds"]) == (status, remaining), name
