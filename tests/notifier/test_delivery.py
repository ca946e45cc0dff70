"""The notifier end to end on each backend: outbox → signed POST to a real receiver → recorded facts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.exc import DataError, OperationalError
from standardwebhooks.webhooks import Webhook

from services.notifier.sender import AttemptResult
from services.notifier.tables import deliveries as deliveries_table
from services.notifier.worker import Notifier, NotifierConfig
from tests.builders import platform_fields
from tests.support import Api

from .receiver import BlackHole, Dribble, Hangup, Receiver, Respond, unused_port


@pytest.fixture
def api(api: Api) -> Api:
    """The app with its frozen clock set to the real time: receivers check webhook-timestamp against it."""
    api.clock.set(datetime.now(UTC).replace(microsecond=0))
    return api


async def drain(notifier: Notifier, pool: httpx.AsyncHTTPTransport) -> int:
    """Claim every due delivery once and wait for their attempts (the loop, `Notifier.run`, without the loop)."""
    jobs = await asyncio.to_thread(notifier.claim, notifier.config.total)
    await asyncio.gather(*(notifier.attempt(pool, job) for job in jobs))
    return len(jobs)


def configured(api: Api, timeout_s: float, allow_list: tuple[str, ...] = ("127.0.0.1",)) -> Notifier:
    """The app's notifier with a short timeout and the given allow-list."""
    notifier = api.container.notifier
    notifier.config = NotifierConfig(timeout_s=timeout_s, allow_list=allow_list)
    return notifier


def point_webhook(api: Api, url: str) -> str:
    r = api.call("PATCH", f"/v1/platforms/{api.platform_a}", "admin", json={"webhook_url": url})
    assert r.status_code == 200, r.text
    rotated = api.call("POST", f"/v1/platforms/{api.platform_a}/secret/rotate", "admin").json()
    return str(rotated["webhook_secret"])


def deliveries(api: Api, order_id: str, webhook_type: str = "order.issued") -> list[dict]:
    found = api.call("GET", f"/v1/deliveries?order_id={order_id}", "admin").json()
    return [d for d in found if d["webhook_type"] == webhook_type]


def event_types(api: Api, order_id: str) -> list[str]:
    return [e["type"] for e in api.call("GET", f"/v1/orders/{order_id}/events", "admin").json()]


async def test_issue_is_pushed_signed_and_the_clock_starts(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    secret = point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(200))
    order = api.issue().json()
    configured(api, timeout_s=2)
    assert await drain(api.container.notifier, pool) == 1
    [request] = receiver.requests("/hook")
    Webhook(secret).verify(request.body, request.headers)
    body = json.loads(request.body)
    assert body["type"] == "order.issued" and body["data"]["order"]["id"] == order["id"]
    assert body["data"]["links"]["acknowledge"].endswith(f"/v1/orders/{order['id']}/acknowledge")
    got = api.call("GET", f"/v1/orders/{order['id']}", "platform_a").json()
    assert got["status"] == "delivered" and got["notified_via"] == "webhook"
    # The delivery records where it was pushed and who the registry had on record then.
    assert got["notification"]["address"] == receiver.url("/hook")
    assert got["notification"]["representative"]["name"] == "Rep"
    notified = datetime.fromisoformat(got["notified_at"])
    assert notified == api.clock.now()
    assert datetime.fromisoformat(got["deadline"]) - notified == timedelta(hours=24)
    [delivery] = deliveries(api, order["id"])
    assert delivery["state"] == "delivered" and delivery["webhook_id"] == request.headers["webhook-id"]
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200]


async def test_500_then_200_retries_with_the_same_webhook_id(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    secret = point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(500, b"oops"), Respond(200))
    notifier = configured(api, timeout_s=2)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    [d] = deliveries(api, oid)
    assert d["state"] == "pending" and d["attempt_log"][0]["status_code"] == 500
    assert d["attempt_log"][0]["response_excerpt"] == "oops"
    assert await drain(notifier, pool) == 0, "the retry waits for its backoff"
    api.advance(seconds=6)
    assert await drain(notifier, pool) == 1
    first, second = receiver.requests("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    for r in (first, second):
        Webhook(secret).verify(r.body, r.headers)
    assert event_types(api, oid) == ["order.issued", "order.delivery_attempt_failed", "order.delivered"]
    assert deliveries(api, oid)[0]["state"] == "delivered"


@pytest.mark.parametrize(
    ("behaviour", "error_kind"),
    [(BlackHole(), "timeout"), (Dribble(length=100, interval=0.1), "timeout"), (Hangup(), "protocol")],
)
async def test_transport_faults_are_recorded_and_retried(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport, behaviour: object, error_kind: str
) -> None:
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", behaviour)  # type: ignore[arg-type]
    notifier = configured(api, timeout_s=0.5)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    [d] = deliveries(api, oid)
    assert d["state"] == "pending"
    assert d["attempt_log"][0]["error_kind"] in (error_kind, "read")
    failed = api.call("GET", f"/v1/orders/{oid}/events", "admin").json()[-1]
    assert failed["type"] == "order.delivery_attempt_failed" and failed["data"]["attempt"] == 1


async def test_connection_refused(api: Api, pool: httpx.AsyncHTTPTransport) -> None:
    point_webhook(api, f"http://127.0.0.1:{unused_port()}/hook")
    notifier = configured(api, timeout_s=0.5)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    assert deliveries(api, oid)[0]["attempt_log"][0]["error_kind"] == "connect"


async def test_429_honours_retry_after(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(429, headers={"Retry-After": "120"}), Respond(200))
    notifier = configured(api, timeout_s=2)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    api.advance(seconds=60)
    assert await drain(notifier, pool) == 0, "Retry-After: 120 must be honoured over the 5 s backoff"
    api.advance(seconds=61)
    assert await drain(notifier, pool) == 1
    assert deliveries(api, oid)[0]["state"] == "delivered"


async def test_410_disables_the_endpoint(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(410))
    notifier = configured(api, timeout_s=2)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    assert deliveries(api, oid)[0]["state"] == "dead"
    platform = api.call("GET", f"/v1/platforms/{api.platform_a}", "admin").json()
    assert platform["webhook_enabled"] is False and "410" in platform["webhook_disabled_reason"]
    # Later orders wait in the inbox instead of being pushed to a gone endpoint.
    second = api.issue(issuer_reference="R-2").json()["id"]
    await drain(notifier, pool)
    assert deliveries(api, second)[0]["state"] == "cancelled"
    assert len(receiver.requests("/hook")) == 1
    assert second in [o["id"] for o in api.call("GET", "/v1/orders", "platform_a").json()["items"]]


async def test_redirect_is_not_followed(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(301, headers={"Location": receiver.url("/elsewhere")}))
    receiver.script("/elsewhere", Respond(200))
    notifier = configured(api, timeout_s=2)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    assert receiver.requests("/elsewhere") == []
    d = deliveries(api, oid)[0]
    assert d["state"] == "pending" and d["attempt_log"][0]["status_code"] == 301


async def test_private_destination_is_refused_without_allow_list(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    sneaky = platform_fields("Sneaky", monthly_users=1, webhook_url="http://169.254.169.254/latest")
    r = api.call("POST", "/v1/platforms", "admin", json=sneaky)
    assert r.status_code == 422 and r.json()["type"] == "/problems/webhook-url-refused"
    # At send time too: the allow-list in force when sending decides, not the one at registration.
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(200))
    notifier = configured(api, timeout_s=2, allow_list=())
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    assert receiver.requests("/hook") == []
    assert deliveries(api, oid)[0]["attempt_log"][0]["error_kind"] == "refused_destination"


async def test_dead_letter_after_last_attempt_escalates(api: Api, pool: httpx.AsyncHTTPTransport) -> None:
    from services.notifier.policy import RetryPolicy

    point_webhook(api, f"http://127.0.0.1:{unused_port()}/hook")
    notifier = configured(api, timeout_s=0.5)
    notifier.recorder.policy = RetryPolicy(max_attempts=3)
    oid = api.issue().json()["id"]
    for _ in range(3):
        await drain(notifier, pool)
        api.advance(minutes=5)
    d = deliveries(api, oid)[0]
    assert d["state"] == "dead" and len(d["attempt_log"]) == 3
    assert event_types(api, oid)[-1] == "order.escalated"
    assert [d["state"] for d in deliveries(api, oid, "order.escalated")] == ["pending"]
    r = api.call("POST", f"/v1/deliveries/{d['id']}/redeliver", "admin")
    assert r.status_code == 200 and r.json()["state"] == "pending"


async def test_rotation_sends_both_signatures(api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport) -> None:
    old = point_webhook(api, receiver.url("/hook"))
    new = api.call("POST", f"/v1/platforms/{api.platform_a}/secret/rotate", "admin").json()["webhook_secret"]
    receiver.script("/hook", Respond(200))
    notifier = configured(api, timeout_s=2)
    api.issue()
    await drain(notifier, pool)
    [request] = receiver.requests("/hook")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)
    # After the overlap only the new secret signs.
    from services.registry.tables import platforms

    with api.container.db.transaction() as conn:
        conn.execute(platforms.update().values(previous_secret_expires_at=api.clock.now() - timedelta(seconds=1)))
    api.issue(issuer_reference="R-2")
    await drain(notifier, pool)
    latest = receiver.requests("/hook")[-1]
    assert len(latest.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(latest.body, latest.headers)


async def test_withdrawal_cancels_what_is_still_queued(api: Api, pool: httpx.AsyncHTTPTransport) -> None:
    point_webhook(api, f"http://127.0.0.1:{unused_port()}/hook")
    notifier = configured(api, timeout_s=0.5)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    assert deliveries(api, oid)[0]["state"] == "pending"
    api.call("POST", f"/v1/orders/{oid}/withdraw", "issuer", json={"reason": "annulled"})
    [issued] = deliveries(api, oid)
    assert issued["state"] == "cancelled" and "withdrawn" in issued["last_error"]
    assert [d["state"] for d in deliveries(api, oid, "order.withdrawn")] == ["pending"]


def test_long_host_names_still_fit_the_lease_column(api: Api) -> None:
    import socket
    from unittest import mock

    with mock.patch.object(socket, "gethostname", return_value="ip-10-20-130-147.eu-central-1.compute.internal" * 2):
        worker = Notifier(
            api.container.db,
            api.container.orders.record_many,
            api.clock,
            endpoint_gone=api.container.registry.disable_webhook,
            keyring=api.container.registry.keyring,
        )
    assert len(worker.worker_id) <= 64
    assert worker.claim(10) == []


async def test_the_request_goes_to_the_address_that_was_checked(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    # "hook.platform.test" exists in no DNS: only the checked answer (127.0.0.1, allow-listed) can reach the
    # receiver, so a request arriving proves the connection used the vetted address, with the Host kept.
    from services.registry.tables import platforms

    port = int(receiver.base_url.rsplit(":", 1)[1])
    secret = point_webhook(api, receiver.url("/hook"))
    with api.container.db.transaction() as conn:  # registration would resolve the name for real: set it directly
        conn.execute(platforms.update().values(webhook_url=f"http://hook.platform.test:{port}/hook"))
    receiver.script("/hook", Respond(200))
    answers = iter([["127.0.0.1"]])
    worker = Notifier(
        api.container.db,
        api.container.orders.record_many,
        api.clock,
        NotifierConfig(timeout_s=2, allow_list=("127.0.0.1",)),
        resolver=lambda host, port: next(answers, ["169.254.169.254"]),
        endpoint_gone=api.container.registry.disable_webhook,
        keyring=api.container.registry.keyring,
    )
    oid = api.issue().json()["id"]
    await drain(worker, pool)
    [request] = receiver.requests("/hook")
    assert request.headers["host"] == f"hook.platform.test:{port}"
    Webhook(secret).verify(request.body, request.headers)
    assert deliveries(api, oid)[0]["state"] == "delivered"


async def test_a_response_with_nul_bytes_is_recorded_with_them_replaced(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(500, b"bad\x00body"))
    notifier = configured(api, timeout_s=2)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    [d] = deliveries(api, oid)
    assert d["attempt_log"][0]["response_excerpt"] == "bad\ufffdbody"
    assert event_types(api, oid) == ["order.issued", "order.delivery_attempt_failed"]


def test_attempts_recorded_together_keep_their_own_outcomes(api: Api, receiver: Receiver) -> None:
    """One batch: delivered, failed, lease lost to another worker, and already notified through the inbox."""
    point_webhook(api, receiver.url("/hook"))
    notifier = configured(api, timeout_s=2)
    oids = [api.issue(issuer_reference=f"BATCH-{n}").json()["id"] for n in range(4)]
    jobs = {job.order_id: job for job in notifier.claim(10)}
    assert set(jobs) == set(oids)
    delivered, failed, stolen, via_inbox = (jobs[o] for o in oids)
    with api.container.db.transaction() as conn:
        conn.execute(
            update(deliveries_table).where(deliveries_table.c.id == stolen.id).values(lease_owner="another-worker")
        )
    r = api.call("POST", f"/v1/orders/{via_inbox.order_id}/acknowledge", "platform_a", json={"note": "seen"})
    assert r.status_code == 200, r.text
    now = api.clock.now()
    ok, oops = AttemptResult(200, None, 3, "", None), AttemptResult(500, None, 4, "oops", None)
    notifier.record_many([(delivered, ok, now), (failed, oops, now), (stolen, ok, now), (via_inbox, ok, now)])

    states = {o: deliveries(api, o)[0] for o in oids}
    assert [states[o]["state"] for o in oids] == ["delivered", "pending", "pending", "delivered"]
    assert [len(states[o]["attempt_log"]) for o in oids] == [1, 1, 0, 1], "the stolen lease's attempt is not ours"
    assert event_types(api, delivered.order_id) == ["order.issued", "order.delivered"]
    assert event_types(api, failed.order_id) == ["order.issued", "order.delivery_attempt_failed"]
    assert event_types(api, stolen.order_id) == ["order.issued"]
    # Acknowledging through the inbox already counted as the notification: the webhook adds no second one.
    assert event_types(api, via_inbox.order_id) == ["order.issued", "order.delivered", "order.acknowledged"]
    got = api.call("GET", f"/v1/orders/{delivered.order_id}", "platform_a").json()
    assert got["status"] == "delivered" and got["notified_via"] == "webhook"
    assert api.call("GET", f"/v1/orders/{failed.order_id}", "admin").json()["failed_delivery_attempts"] == 1


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_a_batch_that_fails_records_every_attempt_but_the_one_that_broke_it(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error in one attempt's facts must not cost the attempts recorded with it theirs."""
    point_webhook(api, receiver.url("/hook"))
    notifier = configured(api, timeout_s=2)
    oids = [api.issue(issuer_reference=f"POISON-{n}").json()["id"] for n in range(3)]
    jobs = {job.order_id: job for job in notifier.claim(10)}
    poisoned = oids[1]
    real = notifier.recorder.order_facts

    def record_many(conn: Any, commands: Any, *args: Any, **kwargs: Any) -> Any:
        if any(order_id == poisoned for order_id, _, _ in commands):
            raise DataError("UPDATE orders ...", {}, Exception("value too long"))
        return real(conn, commands, *args, **kwargs)

    monkeypatch.setattr(notifier.recorder, "order_facts", record_many)
    now = api.clock.now()
    ok = AttemptResult(200, None, 3, "", None)
    notifier.record_many([(jobs[o], ok, now) for o in oids])

    states = {o: deliveries(api, o)[0] for o in oids}
    assert [states[o]["state"] for o in oids] == ["delivered", "pending", "delivered"]
    assert [len(states[o]["attempt_log"]) for o in oids] == [1, 0, 1]
    assert event_types(api, poisoned) == ["order.issued"], "nothing of the broken attempt was kept"


def test_a_deadlocked_batch_is_recorded_on_the_next_try(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_webhook(api, receiver.url("/hook"))
    notifier = configured(api, timeout_s=2)
    oids = [api.issue(issuer_reference=f"DEADLOCK-{n}").json()["id"] for n in range(2)]
    jobs = notifier.claim(10)
    real = notifier.recorder.order_facts
    calls: list[int] = []

    def record_many(conn: Any, commands: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(commands))
        if len(calls) == 1:
            raise OperationalError("INSERT INTO events ...", {}, _Deadlock("deadlock detected"))
        return real(conn, commands, *args, **kwargs)

    monkeypatch.setattr(notifier.recorder, "order_facts", record_many)
    now = api.clock.now()
    notifier.record_many([(job, AttemptResult(200, None, 3, "", None), now) for job in jobs])
    assert calls == [2, 2], "the whole batch again, in one transaction"
    assert [deliveries(api, o)[0]["state"] for o in oids] == ["delivered", "delivered"]
    assert [len(deliveries(api, o)[0]["attempt_log"]) for o in oids] == [1, 1]


async def test_a_6to4_form_of_loopback_is_refused_at_registration_and_again_at_delivery(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    # 127.0.0.1 is allow-listed (the receiver); its 6to4 form reaches whatever relay answers for it, not the receiver.
    tunnel = platform_fields("Tunnel", monthly_users=1, webhook_url="http://[2002:7f00:1::1]:9/hook")
    r = api.call("POST", "/v1/platforms", "admin", json=tunnel)
    assert r.status_code == 422 and r.json()["type"] == "/problems/webhook-url-refused", r.text
    assert "6to4 address 2002:7f00:1::1 embedding loopback address 127.0.0.1" in r.json()["detail"]
    # Registered while the name resolved to the receiver; at delivery it resolves to the NAT64 form of loopback.
    from services.registry.tables import platforms

    port = int(receiver.base_url.rsplit(":", 1)[1])
    point_webhook(api, receiver.url("/hook"))
    with api.container.db.transaction() as conn:
        conn.execute(platforms.update().values(webhook_url=f"http://hook.platform.test:{port}/hook"))
    receiver.script("/hook", Respond(200))
    worker = Notifier(
        api.container.db,
        api.container.orders.record_many,
        api.clock,
        NotifierConfig(timeout_s=2, allow_list=("127.0.0.1",)),
        resolver=lambda host, port: ["64:ff9b::7f00:1"],
        endpoint_gone=api.container.registry.disable_webhook,
        keyring=api.container.registry.keyring,
    )
    oid = api.issue().json()["id"]
    await drain(worker, pool)
    assert receiver.requests("/hook") == []
    [attempt] = deliveries(api, oid)[0]["attempt_log"]
    assert attempt["error_kind"] == "refused_destination"
    assert "NAT64" in attempt["response_excerpt"], attempt


async def test_https_only_refuses_plain_http_endpoints_at_delivery(
    api: Api, receiver: Receiver, pool: httpx.AsyncHTTPTransport
) -> None:
    point_webhook(api, receiver.url("/hook"))
    receiver.script("/hook", Respond(200))
    notifier = api.container.notifier
    notifier.config = NotifierConfig(timeout_s=2, allow_list=("127.0.0.1",), https_only=True)
    oid = api.issue().json()["id"]
    await drain(notifier, pool)
    assert receiver.requests("/hook") == []
    [attempt] = deliveries(api, oid)[0]["attempt_log"]
    assert attempt["error_kind"] == "refused_destination" and "https" in attempt["response_excerpt"]
