"""The served OpenAPI document: short operation ids, tags, response models that mirror the documents returned,
problem+json for every error, request schemas as strict as the code, and the Allow header of a 405."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel

from services.http.schemas.deliveries import AttemptOut, DeliveryOut
from services.http.schemas.orders import ItemOutcomeOut, NotificationOut, OrderItemOut, OrderOut
from services.http.schemas.platforms import PlatformOut
from services.notifier import deliveries
from services.notifier.tables import deliveries as deliveries_table
from services.notifier.tables import delivery_attempts
from services.orders import views
from services.registry import service as registry
from tests.support import Api

OPERATIONS = {
    ("post", "/v1/platforms"): "register_platform",
    ("get", "/v1/platforms"): "list_platforms",
    ("get", "/v1/platforms/{platform_id}"): "get_platform",
    ("patch", "/v1/platforms/{platform_id}"): "update_platform",
    ("post", "/v1/platforms/{platform_id}/secret/rotate"): "rotate_platform_secret",
    ("get", "/v1/platforms/{platform_id}/history"): "platform_history",
    ("post", "/v1/orders"): "issue_order",
    ("get", "/v1/orders"): "list_orders",
    ("get", "/v1/orders/{order_id}"): "get_order",
    ("get", "/v1/orders/{order_id}/events"): "order_events",
    ("get", "/v1/orders/{order_id}/evidence"): "order_evidence",
    ("post", "/v1/orders/{order_id}/acknowledge"): "acknowledge_order",
    ("post", "/v1/orders/{order_id}/outcomes"): "report_outcomes",
    ("post", "/v1/orders/{order_id}/contest"): "contest_order",
    ("post", "/v1/orders/{order_id}/uphold"): "uphold_order",
    ("post", "/v1/orders/{order_id}/withdraw"): "withdraw_order",
    ("post", "/v1/orders/{order_id}/declines/accept"): "accept_declines",
    ("post", "/v1/orders/{order_id}/notices"): "record_notice",
    ("get", "/v1/dashboard/overview"): "dashboard_overview",
    ("get", "/v1/transparency/report"): "transparency_report",
    ("get", "/v1/transparency/report.csv"): "transparency_report_csv",
    ("get", "/v1/transparency/publications/{period}"): "transparency_publication",
    ("get", "/v1/transparency/publications/{period}/proof"): "transparency_publication_proof",
    ("get", "/v1/deliveries"): "list_deliveries",
    ("post", "/v1/deliveries/{delivery_id}/redeliver"): "redeliver",
    ("get", "/v1/sla/summary"): "sla_summary",
    ("get", "/v1/sla/orders"): "sla_orders",
    ("get", "/v1/ledger/checkpoint"): "ledger_checkpoint",
    ("get", "/v1/ledger/public-key"): "ledger_public_key",
    ("get", "/v1/ledger/proofs/consistency"): "ledger_consistency_proof",
    ("get", "/v1/ledger/proofs/inclusion"): "ledger_inclusion_proof",
    ("post", "/v1/keys"): "create_api_key",
    ("get", "/v1/keys"): "list_api_keys",
    ("get", "/v1/keys/{key_id}"): "get_api_key",
    ("post", "/v1/keys/{key_id}/revoke"): "revoke_api_key",
    ("post", "/v1/keys/{key_id}/rotate"): "rotate_api_key",
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "readiness",
    ("get", "/metrics"): "metrics",
}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in document["paths"].items() for method, op in item.items()}


def test_operation_ids_are_short_names_and_every_operation_is_tagged(api: Api) -> None:
    document = api.call("GET", "/openapi.json", None).json()
    ops = operations(document)
    assert {key: op["operationId"] for key, op in ops.items()} == OPERATIONS
    assert all(op.get("tags") for op in ops.values())
    assert {t["name"] for t in document["tags"]} == {tag for op in ops.values() for tag in op["tags"]}


def test_every_error_response_is_a_problem_and_every_success_has_a_schema(api: Api) -> None:
    document = api.call("GET", "/openapi.json", None).json()
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "instance", "errors"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for (method, path), op in operations(document).items():
        responses = op["responses"]
        success = [status for status in responses if status.startswith("2")]
        assert success, (method, path)
        for status in success:
            assert all(media.get("schema") for media in responses[status]["content"].values()), (method, path, status)
        for status, response in responses.items():
            if status.startswith("2") or path == "/readyz":
                continue
            if status == "304":  # not modified: no body, by definition (RFC 9110, 15.4.5)
                assert "content" not in response, (method, path)
                assert "if-none-match" in {p["name"] for p in op["parameters"]}, (method, path)
                continue
            assert response["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (method, path, status)
        if op.get("security"):
            assert "401" in responses, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)


def test_declared_statuses_include_the_ones_the_api_answers(api: Api) -> None:
    order = api.issue().json()["id"]
    unauthenticated = api.call("GET", "/v1/orders", None)
    forbidden = api.call("POST", "/v1/orders", "auditor", json={})
    missing = api.call("GET", "/v1/orders/nope", "admin")
    conflict = api.call("POST", f"/v1/orders/{order}/uphold", "issuer", json={"reason": "stands"})
    malformed = api.call(
        "POST", f"/v1/orders/{order}/contest", "platform_a", content=b"{", headers={"content-type": "application/json"}
    )
    invalid = api.call("GET", "/v1/orders?limit=0", "admin")
    document = api.call("GET", "/openapi.json", None).json()
    ops = operations(document)
    for (method, path), response in [
        (("get", "/v1/orders"), unauthenticated),
        (("post", "/v1/orders"), forbidden),
        (("get", "/v1/orders/{order_id}"), missing),
        (("post", "/v1/orders/{order_id}/uphold"), conflict),
        (("post", "/v1/orders/{order_id}/contest"), malformed),
        (("get", "/v1/orders"), invalid),
    ]:
        assert response.headers["content-type"] == "application/problem+json", response.text
        assert str(response.status_code) in ops[(method, path)]["responses"], (method, path, response.status_code)
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert invalid.json()["errors"][0]["location"] == ["query", "limit"]


def test_a_405_names_the_allowed_methods(api: Api) -> None:
    r = api.call("DELETE", "/v1/orders", "admin")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["allow"] == "GET, POST"
    r = api.call("PUT", f"/v1/platforms/{api.platform_a}", "admin")
    assert r.status_code == 405 and r.headers["allow"] == "GET, PATCH"


def test_patch_refuses_null_for_required_fields_in_the_schema_and_in_the_api(api: Api) -> None:
    schema = api.call("GET", "/openapi.json", None).json()["components"]["schemas"]["PlatformPatch"]
    for field in ("name", "monthly_users", "representative"):
        assert "null" not in str(schema["properties"][field]), field
        assert "default" not in schema["properties"][field], field
        r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={field: None})
        assert r.status_code == 422 and r.json()["errors"][0]["location"] == ["body", field], r.text
    assert {"type": "null"} in schema["properties"]["webhook_url"]["anyOf"]  # null removes the webhook
    r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": None})
    assert r.status_code == 200 and r.json()["webhook_enabled"] is False


def test_request_schemas_carry_the_url_form_the_code_checks(api: Api) -> None:
    schemas = api.call("GET", "/openapi.json", None).json()["components"]["schemas"]
    webhook = schemas["PlatformIn"]["properties"]["webhook_url"]["anyOf"][0]
    assert webhook["pattern"].startswith("^[Hh][Tt][Tt][Pp][Ss]?://")
    assert schemas["ItemIn"]["properties"]["url"]["pattern"].startswith("^[Hh][Tt][Tt][Pp][Ss]?://")
    body = {"name": "C", "monthly_users": 5, "representative": {"name": "R", "email": "r@x.kz"}}
    r = api.call("POST", "/v1/platforms", "admin", json={**body, "webhook_url": "ftp://x"})
    assert r.status_code == 422 and r.json()["type"] == "/problems/webhook-url-refused"


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_response_models_mirror_the_documents_the_services_render(api: Api) -> None:
    oid = api.issue().json()["id"]
    api.call("POST", f"/v1/orders/{oid}/acknowledge", "platform_a")
    api.call(
        "POST",
        f"/v1/orders/{oid}/outcomes",
        "platform_a",
        json={"outcomes": [{"item_id": "item-1", "outcome": "removed", "actioned_at": "2026-03-02T09:00:00Z"}]},
    )
    with api.container.db.read() as conn:
        document = views.get_row(conn, oid).document
        platform = registry.public_view(registry.get(conn, api.platform_a))
    assert set(document) == _fields(OrderOut)
    assert {key for item in document["items"] for key in item} == _fields(OrderItemOut)
    assert set(document["items"][0]["outcome"]) == _fields(ItemOutcomeOut)
    assert set(document["notification"]) == _fields(NotificationOut)
    assert set(platform) == _fields(PlatformOut)
    row = SimpleNamespace(**{c.name: None for c in deliveries_table.columns})
    attempt = SimpleNamespace(**{c.name: None for c in delivery_attempts.columns})
    delivery = deliveries.view(row, [attempt])
    assert set(delivery) == _fields(DeliveryOut)
    assert set(delivery["attempt_log"][0]) == _fields(AttemptOut)
