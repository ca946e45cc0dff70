"""A webhook attempt's log line names its delivery, attempt and platform, and the request that issued the order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.builders import order_body
from tests.logcapture import json_logs
from tests.support import Api

from .receiver import Receiver, Respond
from .test_delivery import configured, deliveries, drain, point_webhook


async def attempt_lines(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport, level: str
) -> list[dict[str, Any]]:
    """A delivery that fails once (500) and then succeeds; the notifier's log lines at `level`."""
    api.clock.set(datetime.now(UTC).replace(microsecond=0))
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(500, b"oops"), Respond(200))
    notifier = configured(api, timeout_s=2)
    issued = api.call(
        "POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"X-Request-Id": "req-issue-7"}
    )
    assert issued.status_code == 201, issued.text
    [delivery] = deliveries(api, issued.json()["id"])
    with json_logs(level) as lines:
        assert await drain(notifier, pool) == 1
        api.advance(minutes=5)  # past the first retry's backoff
        assert await drain(notifier, pool) == 1
    expected = {"request_id": "req-issue-7", "delivery_id": delivery["webhook_id"], "platform_id": api.platform_a}
    found = lines.where(logger="takedown.notifier")
    for line in found:
        assert line.items() >= expected.items()
    return found


async def test_each_finished_attempt_logs_one_line_with_the_issuing_request_id(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    failed, delivered = await attempt_lines(api, receiver, pool, "DEBUG")
    assert failed.items() >= {"attempt": 1, "outcome": "retry", "status_code": 500, "level": "info"}.items()
    assert failed["state"] == "pending" and failed["next_attempt_at"] is not None
    assert delivered.items() >= {"attempt": 2, "outcome": "delivered", "status_code": 200}.items()
    assert delivered["level"] == "debug" and delivered["state"] == "delivered"
    assert isinstance(delivered["duration_ms"], int) and delivered["message"] == "webhook attempt delivered"


async def test_at_info_a_delivered_attempt_writes_no_line_and_a_failed_one_does(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    [failed] = await attempt_lines(api, receiver, pool, "INFO")
    assert (failed["attempt"], failed["outcome"], failed["level"]) == (1, "retry", "info")
