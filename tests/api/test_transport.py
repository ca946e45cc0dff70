"""Transport: every error is problem+json (404, 405, 413, 415, malformed JSON), every response carries HSTS and
nosniff (the dashboard keeps its CSP), and production refuses plain http webhooks, keeps /metrics behind its key
and serves no /docs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.bootstrap import bootstrap
from services.http.app import create_app
from services.http.problems import is_json_media_type
from shared.auth import create_key
from shared.clock import FrozenClock
from tests.builders import T0, order_body, platform_fields, service_settings
from tests.support import Api

HSTS = "max-age=63072000; includeSubDomains"


def assert_secured(r: Any) -> None:
    assert r.headers["strict-transport-security"] == HSTS, (r.status_code, r.headers)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]


def test_every_error_is_a_problem_with_the_security_headers(api: Api) -> None:
    order = order_body(api.platform_a)
    answers = {
        404: api.call("GET", "/v1/no-such-route", "admin"),
        405: api.call("DELETE", "/v1/orders", "admin"),
        413: api.call("POST", "/v1/orders", "issuer", json={**order, "statement_of_reasons": "x" * 300_000}),
        415: api.call("POST", "/v1/orders", "issuer", content=b"a=b", headers={"content-type": "text/plain"}),
        400: api.call("POST", "/v1/orders", "issuer", content=b"{", headers={"content-type": "application/json"}),
        401: api.call("GET", "/v1/orders", None),
        422: api.call("POST", "/v1/orders", "issuer", json={}),
    }
    for status, r in answers.items():
        assert r.status_code == status, (status, r.text)
        assert r.headers["content-type"] == "application/problem+json", (status, r.headers)
        assert r.json()["status"] == status
        assert_secured(r)
    assert answers[415].json()["type"] == "/problems/unsupported-media-type"
    url_nul = api.call("GET", "/v1/orders/%00", "admin")
    assert url_nul.status_code == 400 and url_nul.headers["content-type"] == "application/problem+json"
    assert_secured(url_nul)


def test_json_media_types_with_parameters_pass_and_no_body_needs_none(api: Api) -> None:
    r = api.call(
        "POST",
        "/v1/orders",
        "issuer",
        content=json.dumps(order_body(api.platform_a)).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text
    assert_secured(r)
    oid = r.json()["id"]
    assert api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a").status_code == 200
    assert is_json_media_type("application/merge-patch+json") and not is_json_media_type("text/json")
    assert not is_json_media_type("multipart/form-data; boundary=x")


def test_successes_and_the_dashboard_carry_the_headers_and_the_dashboard_keeps_its_csp(api: Api) -> None:
    for path in ("/healthz", "/openapi.json", "/v1/ledger/public-key", "/metrics"):
        r = api.call("GET", path, None)
        assert r.status_code == 200, path
        assert_secured(r)
    page = api.call("GET", "/dashboard", None)
    assert page.status_code == 200
    assert_secured(page)
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert_secured(api.call("GET", f"/v1/platforms/{api.platform_a}", "admin"))


@pytest.fixture
def production(db_url: str) -> Iterator[TestClient]:
    """The app wired as in production (https only, metrics key, no docs) over a test database."""
    settings = service_settings(db_url).model_copy(
        update={
            "environment": "production",
            "public_base_url": "https://takedown.example.kz",
            "metrics_key": SecretStr("metrics-key-for-the-scraper"),
        }
    )
    container = bootstrap(settings, clock=FrozenClock(T0))
    with container.db.transaction() as conn:
        admin = create_key(conn, "admin", T0)[0]
    with TestClient(create_app(container, run_workers=False)) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        yield client
    container.close()


def test_production_refuses_http_webhooks_at_registration(production: TestClient) -> None:
    r = production.post("/v1/platforms", json=platform_fields("Plain", webhook_url="http://127.0.0.1:9/hook"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/webhook-url-refused" and "https" in r.json()["detail"]
    r = production.post("/v1/platforms", json=platform_fields("Tls", webhook_url="https://127.0.0.1:9/hook"))
    assert r.status_code == 201, r.text


def test_production_metrics_need_the_key_and_docs_are_off(production: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic bWV0cmljcw=="}):
        r = production.get("/metrics", headers={"Authorization": "", **headers})
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text
    r = production.get("/metrics", headers={"Authorization": "Bearer metrics-key-for-the-scraper"})
    assert r.status_code == 200 and "takedown_unnumbered_events" in r.text
    for path in ("/docs", "/redoc"):
        r = production.get(path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert production.get("/openapi.json").status_code == 200  # the contract stays readable


def test_production_without_a_metrics_key_serves_no_metrics(db_url: str) -> None:
    settings = service_settings(db_url).model_copy(
        update={"environment": "production", "public_base_url": "https://takedown.example.kz"}
    )
    container = bootstrap(settings, clock=FrozenClock(T0))
    with TestClient(create_app(container, run_workers=False)) as client:
        assert client.get("/metrics").status_code == 404
    container.close()
