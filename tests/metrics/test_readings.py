"""The figures a scrape reads in-process: HTTP requests by route template, orders issued, projection and ledger lag
in events and seconds, SLA statuses; on SQLite and PostgreSQL, with the API's frozen clock."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.metrics import scrape
from tests.builders import order_body
from tests.support import Api


def value(name: str, **labels: str) -> float:
    """A sample's value in this process's registry (0 when the series has not been written yet)."""
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_requests_are_counted_and_timed_by_route_template_and_orders_once_issued(api: Api) -> None:
    posted = {"route": "/v1/orders", "method": "POST", "status": "201"}
    replayed = {**posted, "status": "200"}
    read = {"route": "/v1/orders/{order_id}", "method": "GET", "status": "200"}
    before = {
        "posted": value("takedown_http_requests_total", **posted),
        "replayed": value("takedown_http_requests_total", **replayed),
        "read": value("takedown_http_requests_total", **read),
        "timed": value("takedown_http_request_seconds_count", route="/v1/orders"),
        "unmatched": value("takedown_http_requests_total", route="unmatched", method="GET", status="404"),
        "issued": value("takedown_orders_issued_total"),
    }
    key = {"Idempotency-Key": "metrics-1"}
    first = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers=key)
    again = api.call("POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers=key)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert api.call("GET", f"/v1/orders/{first.json()['id']}", "issuer").status_code == 200
    assert api.call("GET", "/no/such/page", None).status_code == 404

    assert value("takedown_http_requests_total", **posted) == before["posted"] + 1
    assert value("takedown_http_requests_total", **replayed) == before["replayed"] + 1
    assert value("takedown_http_requests_total", **read) == before["read"] + 1  # the template, never the id
    assert value("takedown_http_request_seconds_count", route="/v1/orders") == before["timed"] + 2
    assert value("takedown_http_requests_total", route="unmatched", method="GET", status="404") == (
        before["unmatched"] + 1
    )
    assert value("takedown_orders_issued_total") == before["issued"] + 1  # the replay issued nothing
    assert f"/v1/orders/{first.json()['id']}" not in api.call("GET", "/metrics", None).text


def test_projection_and_ledger_lag_in_events_and_seconds_then_caught_up(api: Api) -> None:
    c = api.container
    for n in range(2):
        assert api.issue(issuer_reference=f"LAG-{n}").status_code == 201
    c.sequencer.catch_up()  # PostgreSQL numbers after commit; SQLite already did
    with c.db.read() as conn:
        head = c.store.head(conn)
    assert head >= 2
    api.advance(seconds=30)

    scrape.refresh(c, ["projections", "ledger feeder"])
    assert value("takedown_projection_lag_events", projection="sla") == head
    assert value("takedown_projection_lag_seconds", projection="sla") == 30.0
    assert value("takedown_ledger_lag_events") == head
    assert value("takedown_ledger_lag_seconds") == 30.0

    c.projections.run_once()
    c.ledger.feed()
    scrape.refresh(c, ["projections", "ledger feeder"])
    assert value("takedown_projection_lag_events", projection="sla") == 0
    assert value("takedown_projection_lag_seconds", projection="sla") == 0
    assert value("takedown_ledger_lag_events") == 0
    assert value("takedown_ledger_lag_seconds") == 0


def test_sla_status_gauges_follow_the_projections_counters(api: Api) -> None:
    c = api.container
    for n in range(3):
        assert api.issue(issuer_reference=f"SLA-{n}").status_code == 201
    c.sequencer.catch_up()
    c.projections.run_once()
    scrape.refresh(c, ["scheduler"])
    statuses = ("awaiting_delivery", "on_track", "at_risk", "breached", "withdrawn")
    counted = {status: value("takedown_sla_orders", status=status) for status in statuses}
    assert sum(counted.values()) == 3, counted
    # Never delivered, no webhook: every order waits for its first push (its clock has not started).
    assert counted["awaiting_delivery"] == 3, counted
