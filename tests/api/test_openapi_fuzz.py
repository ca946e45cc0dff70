"""Schemathesis over the served OpenAPI document, with every role's key and seeded data.

Each generated request (positive and negative) is sent with the admin, issuer, platform and auditor keys and with
none, and each response must: not be a server error, have a documented status, content type and headers, match its
documented schema, and, for a schema-valid request, not be refused as invalid (400/422). Path ids, the order's
platform, page cursors and webhook hosts are mapped to data that exists (JSON Schema cannot say "an id that
exists"), so schema-valid requests reach the service's rules instead of stopping at "not found".
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from services.notifier.tables import deliveries
from tests.builders import T0
from tests.support import Api

ROLES: tuple[str | None, ...] = ("admin", "issuer", "platform_a", "auditor", None)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    positive_data_acceptance,
]
# Examples per operation and generation mode; every example is sent once per role. Bounded so that the whole run
# takes about a minute on two cores: PostgreSQL (the production store, and the stricter one) gets most of them.
EXAMPLES = {
    "postgresql": {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 10},
    "sqlite": {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 4},
}


CURSORS = ("/v1/orders", "/v1/sla/orders")


@dataclass
class Seeded:
    """Ids of data that exists, by path parameter, and a cursor the API returned."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    platforms: list[str] = field(default_factory=list)
    cursors: dict[str, str | None] = field(default_factory=dict)


def seed(api: Api) -> Seeded:
    """Orders in every state, a platform with a webhook, and deliveries pending and dead."""
    hook = api.call(
        "POST",
        "/v1/platforms",
        "admin",
        json={
            "name": "Hooked",
            "monthly_users": 150_000,
            "representative": {"name": "R", "email": "r@hooked.example"},
            "webhook_url": "http://127.0.0.1:9/hook",
        },
    ).json()["id"]
    orders = [api.issue(issuer_reference=f"SEED-{n}").json()["id"] for n in range(5)]
    _issued, acknowledged, contested, withdrawn, closed = orders
    api.call("POST", f"/v1/orders/{acknowledged}/acknowledge", "platform_a")
    api.call("POST", f"/v1/orders/{contested}/contest", "platform_a", json={"grounds": "other", "detail": "why"})
    api.call("POST", f"/v1/orders/{withdrawn}/withdraw", "issuer", json={"reason": "annulled"})
    now = api.clock.now().isoformat()
    outcomes = [{"item_id": f"item-{n}", "outcome": "removed", "actioned_at": now} for n in (1, 2)]
    api.call("POST", f"/v1/orders/{closed}/outcomes", "platform_a", json={"outcomes": outcomes})
    pushed = [api.issue(platform=hook, issuer_reference=f"HOOK-{n}").json()["id"] for n in range(2)]
    with api.container.db.transaction() as conn:
        conn.execute(update(deliveries).where(deliveries.c.order_id == pushed[1]).values(state="dead"))
    found = api.call("GET", "/v1/deliveries", "admin").json()
    cursors = {path: api.call("GET", f"{path}?limit=1", "admin").json()["next_cursor"] for path in CURSORS}
    return Seeded(
        ids={
            "order_id": [*orders, *pushed],
            "platform_id": [api.platform_a, api.platform_b, hook],
            "delivery_id": [d["id"] for d in found],
        },
        platforms=[api.platform_a, api.platform_b],
        cursors=cursors,
    )


def _pick(options: list[str], generated: object) -> str | None:
    """A seeded value chosen by the generated one; now and then none, so that unknown ids are tried too."""
    n = zlib.crc32(repr(generated).encode())
    return None if n % 8 == 0 else options[n % len(options)]


WEBHOOK_HOST = re.compile(r"^(https?://)[^/:?#]+", re.IGNORECASE)


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def point_at_seeded_data(case: Case, data: Seeded) -> None:
    """Replace generated ids and references with ones that exist (in place)."""
    for name, value in list((case.path_parameters or {}).items()):
        if name in data.ids and (chosen := _pick(data.ids[name], value)) is not None:
            case.path_parameters[name] = chosen
    if isinstance(case.query, dict) and isinstance(case.query.get("cursor"), str):
        # A cursor is one the API returned for that list, or none.
        if (cursor := data.cursors.get(case.operation.path)) is None:
            case.query.pop("cursor")
        else:
            case.query["cursor"] = cursor
    if isinstance(case.query, dict):
        # A proof relates two numbers (first <= second, position <= tree_size), which JSON Schema cannot say.
        for low, high in (("first", "second"), ("position", "tree_size")):
            a, b = case.query.get(low), case.query.get(high)
            if isinstance(a, int) and isinstance(b, int) and a > b:
                case.query[low], case.query[high] = b, a
    if isinstance(case.query, dict) and case.operation.path.startswith("/v1/transparency"):
        # A report spans at most 120 months or 366 days of the past (`from` <= `to` <= today), and groups only
        # by month: relations between parameters and the clock, which JSON Schema cannot say. Generated values
        # become a valid report (tests/transparency checks the refusals).
        if _date(case.query.get("from")) is not None or _date(case.query.get("to")) is not None:
            case.query["from"], case.query["to"] = (T0.date() - timedelta(days=300)).isoformat(), T0.date().isoformat()
        if case.query.get("period") == "day":
            case.query.pop("group_by", None)
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("platform_id"), str):
        body["platform_id"] = data.platforms[zlib.crc32(body["platform_id"].encode()) % len(data.platforms)]
    if isinstance(body.get("webhook_url"), str):
        # The registry resolves the host and refuses private addresses: point it at the allow-listed loopback.
        body["webhook_url"] = WEBHOOK_HOST.sub(r"\g<1>127.0.0.1", body["webhook_url"])
    items = body.get("items")
    if isinstance(items, list):
        # Item URLs and item ids are unique within an order, which JSON Schema cannot say of a property.
        seen: set[object] = set()
        for n, item in enumerate(items):
            if isinstance(item, dict):
                if isinstance(item.get("url"), str) and item["url"] in seen:
                    item["url"] = f"{item['url']}#{n}" if "#" not in item["url"] else f"{item['url']}{n}"
                if item.get("item_id") in seen:
                    item.pop("item_id")
                seen.update({item.get("url"), item.get("item_id")} - {None})


@dataclass
class Tally:
    """What the run did and found."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def run_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    data: Seeded,
    tally: Tally,
    keys: dict[str | None, dict[str, str]],
) -> None:
    """Generate this operation's cases in this mode and check every role's response."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case) -> None:
        point_at_seeded_data(case, data)
        tally.cases += 1
        for role in ROLES:
            response = case.call(headers=keys[role])
            tally.statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=keys[role])

    try:
        check()
    except Unsatisfiable:
        pass  # a negative mode with nothing to negate (e.g. no parameters)
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation's failures are reported together
        tally.failures.append(f"{operation.label} [{mode.value}]: {exc}")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_served_document_describes_what_the_api_does(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    data = seed(api)
    keys: dict[str | None, dict[str, str]] = {
        role: ({"Authorization": f"Bearer {api.keys[role]}"} if role else {}) for role in ROLES
    }
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    tally = Tally()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    examples = EXAMPLES[api.container.db.dialect]
    for operation in operations:
        for mode, count in examples.items():
            run_operation(operation, mode, count, data, tally, keys)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nschemathesis on {api.container.db.dialect}: {len(operations)} operations, {tally.cases} cases, "
            f"{tally.statuses.total()} requests in {elapsed:.1f} s; statuses {dict(sorted(tally.statuses.items()))}; "
            f"{len(tally.failures)} failing operation(s)"
        )
    assert not tally.failures, "\n\n".join(tally.failures)
