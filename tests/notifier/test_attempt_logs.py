"""A webhook attempt's log line names its delivery, attempt and platform, and the request that issued the order."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.builders import order_body
from tests.logcapture import json_logs
from tests.support import Api

from .receiver import Receiver, Respond
from .test_delivery import configured, deliveries, drain, point_webhook


async def test_each_finished_attempt_logs_one_line_with_the_issuing_request_id(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    api.clock.set(datetime.now(UTC).replace(microsecond=0))
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(500, b"oops"), Respond(200))
    notifier = configured(api, timeout_s=2)
    issued = api.call(
        "POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"X-Request-Id": "req-issue-7"}
    )
    assert issued.status_code == 201, issued.text
    [delivery] = deliveries(api, issued.json()["id"])
    with json_logs() as lines:
        assert await drain(notifier, pool) == 1
        api.advance(minutes=5)  # past the first retry's backoff
        assert await drain(notifier, pool) == 1
    failed, delivered = lines.where(logger="takedown.notifier")
    expected = {"request_id": "req-issue-7", "delivery_id": delivery["webhook_id"], "platform_id": api.platform_a}
    assert failed.items() >= {**expected, "attempt": 1, "outcome": "retry", "status_code": 500}.items()
    assert failed["state"] == "pending" and failed["next_attempt_at"] is not None
    assert delivered.items() >= {**expected, "attempt": 2, "outcome": "delivered", "status_code": 200}.items()
    assert delivered["level"] == "info" and delivered["state"] == "delivered"
    assert isinstance(delivered["duration_ms"], int) and delivered["message"] == "webhook attempt delivered"
