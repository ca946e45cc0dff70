"""One delivery attempt against a real HTTP server on 127.0.0.1, for every way a platform can answer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.notifier.policy import classify, parse_retry_after
from services.notifier.sender import EXCERPT_BYTES, AttemptResult, send
from services.webhooks.signing import generate_secret, webhook_headers

from .receiver import BlackHole, Dribble, Garbage, Hangup, Receiver, Respond, unused_port

TIMEOUT = 0.5
BODY = json.dumps({"type": "order.issued", "timestamp": "2026-03-02T09:00:00Z", "data": {"id": "o1"}}).encode()
SECRET = generate_secret()


def headers(msg_id: str = "msg_1", secrets: tuple[str, ...] = (SECRET,)) -> dict[str, str]:
    return webhook_headers(secrets, msg_id, int(time.time()), BODY)


async def attempt(pool: httpx.AsyncHTTPTransport, url: str, timeout: float = TIMEOUT) -> AttemptResult:
    return await send(pool, url, headers(), BODY, timeout)


async def test_200_is_delivered_and_the_receiver_can_verify_it(
    receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    url = receiver.script("/ok", Respond(200, b'{"received": true}'))
    result = await attempt(pool, url)
    assert result == AttemptResult(200, None, result.duration_ms, '{"received": true}', None)
    assert classify(result.status_code, result.error_kind) == "delivered"
    [request] = receiver.requests("/ok")
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.body == BODY
    assert Webhook(SECRET).verify(request.body, request.headers) == json.loads(BODY)


async def test_500_then_200_retries_with_the_same_webhook_id(
    receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    url = receiver.script("/flaky", Respond(500, b"boom"), Respond(200))
    first = await send(pool, url, headers("msg_same"), BODY, TIMEOUT)
    second = await send(pool, url, headers("msg_same"), BODY, TIMEOUT)
    assert (first.status_code, first.response_excerpt, classify(first.status_code, first.error_kind)) == (
        500,
        "boom",
        "retry",
    )
    assert classify(second.status_code, second.error_kind) == "delivered"
    received = receiver.requests("/flaky")
    assert [r.headers["webhook-id"] for r in received] == ["msg_same", "msg_same"]
    for request in received:
        Webhook(SECRET).verify(request.body, request.headers)


async def test_rotation_request_verifies_with_old_only_and_new_only(
    receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    old, new = generate_secret(), generate_secret()
    url = receiver.script("/rotating", Respond(204))
    result = await send(pool, url, headers(secrets=(new, old)), BODY, TIMEOUT)
    assert result.status_code == 204
    [request] = receiver.requests("/rotating")
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_reported_raw(receiver: Receiver, pool: httpx.AsyncHTTPTransport, status: int) -> None:
    url = receiver.script("/busy", Respond(status, headers={"Retry-After": "7"}))
    result = await attempt(pool, url)
    assert (result.status_code, result.retry_after) == (status, "7")
    assert classify(result.status_code, result.error_kind) == "retry_after"
    assert parse_retry_after(result.retry_after, datetime.now(UTC)) == 7.0


async def test_410_is_gone(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    result = await attempt(pool, receiver.script("/gone", Respond(410)))
    assert (result.status_code, result.error_kind) == (410, None)
    assert classify(result.status_code, result.error_kind) == "gone"


async def test_redirect_is_not_followed(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    receiver.script("/elsewhere", Respond(200))
    url = receiver.script("/moved", Respond(301, headers={"Location": receiver.url("/elsewhere")}))
    result = await attempt(pool, url)
    assert result.status_code == 301
    assert classify(result.status_code, result.error_kind) == "retry"
    assert receiver.requests("/elsewhere") == []


async def test_a_cookie_set_by_one_answer_is_never_sent_back(
    receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    # A webhook is a stateless POST: one delivery's Set-Cookie must not ride along with the platform's next one.
    url = receiver.script("/cookie", Respond(200, headers={"Set-Cookie": "session=abc; Path=/"}), Respond(200))
    first, second = await attempt(pool, url), await attempt(pool, url)
    assert (first.status_code, second.status_code) == (200, 200)
    sent = receiver.requests("/cookie")
    assert len(sent) == 2 and all("cookie" not in r.headers for r in sent)


async def test_the_request_names_the_sender_and_asks_for_no_compression(
    receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    url = receiver.script("/who", Respond(200))
    await attempt(pool, url)
    [request] = receiver.requests("/who")
    assert request.headers["user-agent"].startswith("takedown-notifier/")
    assert request.headers["host"] == url.split("/")[2]
    assert request.headers["accept"] == "*/*"
    assert "accept-encoding" not in request.headers  # the excerpt is read raw: nothing to inflate


async def test_black_hole_times_out_on_time(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    url = receiver.script("/void", BlackHole())
    result = await attempt(pool, url)
    assert (result.status_code, result.error_kind) == (None, "timeout")
    assert 450 <= result.duration_ms < 1500
    assert len(receiver.requests("/void")) == 1


async def test_dribbling_body_is_a_timeout_though_every_read_is_quick(
    receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    # Each byte arrives well within httpx's per-read timeout; only the total deadline can stop this.
    url = receiver.script("/drip", Dribble(200, length=1000, interval=0.05))
    result = await attempt(pool, url)
    assert (result.status_code, result.error_kind) == (200, "timeout")
    assert classify(result.status_code, result.error_kind) == "retry"
    assert 450 <= result.duration_ms < 1500


async def test_slow_but_in_time_answer_is_delivered(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    url = receiver.script("/slow", Respond(200, delay=0.2))
    result = await attempt(pool, url)
    assert (result.status_code, result.error_kind) == (200, None)
    assert result.duration_ms >= 190


async def test_hangup_without_answer_is_a_protocol_error(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    result = await attempt(pool, receiver.script("/hangup", Hangup()))
    assert (result.status_code, result.error_kind) == (None, "protocol")
    assert classify(result.status_code, result.error_kind) == "retry"


async def test_connection_reset_is_a_read_error(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    result = await attempt(pool, receiver.script("/reset", Hangup(reset=True)))
    assert (result.status_code, result.error_kind) == (None, "read")


async def test_garbage_answer_is_a_protocol_error(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    result = await attempt(pool, receiver.script("/smtp", Garbage()))
    assert (result.status_code, result.error_kind) == (None, "protocol")


async def test_connection_refused_is_a_connect_error(pool: httpx.AsyncHTTPTransport) -> None:
    result = await attempt(pool, f"http://127.0.0.1:{unused_port()}/hook")
    assert (result.status_code, result.error_kind) == (None, "connect")
    assert result.duration_ms < 500


async def test_large_response_is_cut_to_an_excerpt(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    url = receiver.script("/chatty", Respond(200, b"a" * 1_000_000))
    # The cut is the point, not the deadline: a loaded CI machine once took over 0.5 s to serve the megabyte.
    result = await attempt(pool, url, timeout=10.0)
    assert (result.status_code, result.error_kind) == (200, None)
    assert result.response_excerpt == "a" * EXCERPT_BYTES


async def test_non_utf8_excerpt_is_replaced_not_raised(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    url = receiver.script("/latin", Respond(500, b"\xff\xfe oops", headers={"content-type": "text/plain"}))
    result = await attempt(pool, url)
    assert result.response_excerpt == "\ufffd\ufffd oops"


async def test_result_is_frozen(receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    result = await attempt(pool, receiver.script("/ok", Respond(200)))
    with pytest.raises(AttributeError):
        result.status_code = 500  # type: ignore[misc]
