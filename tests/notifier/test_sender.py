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


async def attempt(client: httpx.AsyncClient, url: str, timeout: float = TIMEOUT) -> AttemptResult:
    return await send(client, url, headers(), BODY, timeout)


async def test_200_is_delivered_and_the_receiver_can_verify_it(receiver: Receiver, client: httpx.AsyncClient) -> None:
    url = receiver.script("/ok", Respond(200, b'{"received": true}'))
    result = await attempt(client, url)
    assert result == AttemptResult(200, None, result.duration_ms, '{"received": true}', None)
    assert classify(result.status_code, result.error_kind) == "delivered"
    [request] = receiver.requests("/ok")
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.body == BODY
    assert Webhook(SECRET).verify(request.body, request.headers) == json.loads(BODY)


async def test_500_then_200_retries_with_the_same_webhook_id(receiver: Receiver, client: httpx.AsyncClient) -> None:
    url = receiver.script("/flaky", Respond(500, b"boom"), Respond(200))
    first = await send(client, url, headers("msg_same"), BODY, TIMEOUT)
    second = await send(client, url, headers("msg_same"), BODY, TIMEOUT)
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
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    old, new = generate_secret(), generate_secret()
    url = receiver.script("/rotating", Respond(204))
    result = await send(client, url, headers(secrets=(new, old)), BODY, TIMEOUT)
    assert result.status_code == 204
    [request] = receiver.requests("/rotating")
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_reported_raw(receiver: Receiver, client: httpx.AsyncClient, status: int) -> None:
    url = receiver.script("/busy", Respond(status, headers={"Retry-After": "7"}))
    result = await attempt(client, url)
    assert (result.status_code, result.retry_after) == (status, "7")
    assert classify(result.status_code, result.error_kind) == "retry_after"
    assert parse_retry_after(result.retry_after, datetime.now(UTC)) == 7.0


async def test_410_is_gone(receiver: Receiver, client: httpx.AsyncClient) -> None:
    result = await attempt(client, receiver.script("/gone", Respond(410)))
    assert (result.status_code, result.error_kind) == (410, None)
    assert classify(result.status_code, result.error_kind) == "gone"


async def test_redirect_is_not_followed(receiver: Receiver, client: httpx.AsyncClient) -> None:
    receiver.script("/elsewhere", Respond(200))
    url = receiver.script("/moved", Respond(301, headers={"Location": receiver.url("/elsewhere")}))
    result = await attempt(client, url)
    assert result.status_code == 301
    assert classify(result.status_code, result.error_kind) == "retry"
    assert receiver.requests("/elsewhere") == []


async def test_redirect_is_not_followed_even_by_a_following_client(receiver: Receiver) -> None:
    receiver.script("/elsewhere", Respond(200))
    url = receiver.script("/moved", Respond(307, headers={"Location": receiver.url("/elsewhere")}))
    async with httpx.AsyncClient(trust_env=False, follow_redirects=True) as following:
        result = await attempt(following, url)
    assert result.status_code == 307
    assert receiver.requests("/elsewhere") == []


async def test_black_hole_times_out_on_time(receiver: Receiver, client: httpx.AsyncClient) -> None:
    url = receiver.script("/void", BlackHole())
    result = await attempt(client, url)
    assert (result.status_code, result.error_kind) == (None, "timeout")
    assert 450 <= result.duration_ms < 1500
    assert len(receiver.requests("/void")) == 1


async def test_dribbling_body_is_a_timeout_though_every_read_is_quick(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    # Each byte arrives well within httpx's per-read timeout; only the total deadline can stop this.
    url = receiver.script("/drip", Dribble(200, length=1000, interval=0.05))
    result = await attempt(client, url)
    assert (result.status_code, result.error_kind) == (200, "timeout")
    assert classify(result.status_code, result.error_kind) == "retry"
    assert 450 <= result.duration_ms < 1500


async def test_slow_but_in_time_answer_is_delivered(receiver: Receiver, client: httpx.AsyncClient) -> None:
    url = receiver.script("/slow", Respond(200, delay=0.2))
    result = await attempt(client, url)
    assert (result.status_code, result.error_kind) == (200, None)
    assert result.duration_ms >= 190


async def test_hangup_without_answer_is_a_protocol_error(receiver: Receiver, client: httpx.AsyncClient) -> None:
    result = await attempt(client, receiver.script("/hangup", Hangup()))
    assert (result.status_code, result.error_kind) == (None, "protocol")
    assert classify(result.status_code, result.error_kind) == "retry"


async def test_connection_reset_is_a_read_error(receiver: Receiver, client: httpx.AsyncClient) -> None:
    result = await attempt(client, receiver.script("/reset", Hangup(reset=True)))
    assert (result.status_code, result.error_kind) == (None, "read")


async def test_garbage_answer_is_a_protocol_error(receiver: Receiver, client: httpx.AsyncClient) -> None:
    result = await attempt(client, receiver.script("/smtp", Garbage()))
    assert (result.status_code, result.error_kind) == (None, "protocol")


async def test_connection_refused_is_a_connect_error(client: httpx.AsyncClient) -> None:
    result = await attempt(client, f"http://127.0.0.1:{unused_port()}/hook")
    assert (result.status_code, result.error_kind) == (None, "connect")
    assert result.duration_ms < 500


async def test_large_response_is_cut_to_an_excerpt(receiver: Receiver, client: httpx.AsyncClient) -> None:
    url = receiver.script("/chatty", Respond(200, b"a" * 1_000_000))
    result = await attempt(client, url)
    assert (result.status_code, result.error_kind) == (200, None)
    assert result.response_excerpt == "a" * EXCERPT_BYTES


async def test_non_utf8_excerpt_is_replaced_not_raised(receiver: Receiver, client: httpx.AsyncClient) -> None:
    url = receiver.script("/latin", Respond(500, b"\xff\xfe oops", headers={"content-type": "text/plain"}))
    result = await attempt(client, url)
    assert result.response_excerpt == "\ufffd\ufffd oops"


async def test_result_is_frozen(receiver: Receiver, client: httpx.AsyncClient) -> None:
    result = await attempt(client, receiver.script("/ok", Respond(200)))
    with pytest.raises(AttributeError):
        result.status_code = 500  # type: ignore[misc]
