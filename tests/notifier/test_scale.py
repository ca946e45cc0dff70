"""Two notifier OS processes on one PostgreSQL deliver 500 orders: each once at a time, same webhook-id, none lost.

The notifiers are the real `takedown notifier` command; the test process issues the orders through the
OrderService while both run, and a real receiver on 127.0.0.1 times every exchange. About a fifth of the messages
get a 500 on their first attempt, so they are retried (after the 5 s front-loaded backoff), possibly by the other
process.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from services.notifier.tables import deliveries, delivery_attempts
from shared.eventstore.tables import events
from tests.conftest import PG_ADMIN_URL

from .fleet import (
    NotifierProcess,
    TrackingReceiver,
    issue_orders,
    overlapping,
    register_platforms,
    wait_for_delivered,
    wait_until_claiming,
    world,
)

ORDERS = 500
PLATFORMS = 5

pytestmark = pytest.mark.postgres


def fails_first(webhook_id: str) -> bool:
    """A fixed fifth of the messages: their first attempt gets a 500."""
    return hashlib.sha256(webhook_id.encode()).digest()[0] % 5 == 0


def test_two_notifier_processes_deliver_500_orders(pg_url: str, tmp_path: Path) -> None:
    database = pg_url.rsplit("/", 1)[1]
    container = world(pg_url)
    # A short delay per answer keeps each process's per-platform slots busy, so the other one gets work too.
    with TrackingReceiver(delay=0.02, fail_first=fails_first) as receiver:
        secrets = register_platforms(container, receiver, PLATFORMS)
        procs: list[NotifierProcess] = []
        try:
            procs = [NotifierProcess(pg_url, f"notifier-{n}", tmp_path, TAKEDOWN_WEBHOOK_TIMEOUT_S="5") for n in (1, 2)]
            wait_until_claiming(PG_ADMIN_URL, database, [p.name for p in procs], procs)
            order_ids = issue_orders(container, list(secrets), ORDERS, "S")
            wait_for_delivered(container, ORDERS, procs, timeout=30)
            codes = [p.terminate() for p in procs]
            assert codes == [0, 0], [p.log() for p in procs]
        finally:
            for p in procs:
                p.terminate()
        exchanges = receiver.exchanges()
    try:
        with container.db.read() as conn:
            rows = conn.execute(select(deliveries)).all()
            attempts = conn.execute(select(delivery_attempts).order_by(delivery_attempts.c.started_at)).all()
            delivered_events = Counter(
                conn.execute(select(events.c.stream_id).where(events.c.type == "order.delivered")).scalars()
            )
    finally:
        container.close()

    # Every order was delivered, once, and its clock started: one order.delivered each.
    assert len(rows) == ORDERS and {r.order_id for r in rows} == set(order_ids)
    assert Counter(r.state for r in rows) == {"delivered": ORDERS}
    assert all(r.lease_owner is None for r in rows)
    assert delivered_events == dict.fromkeys(order_ids, 1)

    # Attempts: numbered 1..n per delivery (the unique (delivery_id, attempt) held), never overlapping in time.
    by_delivery: dict[str, list[Any]] = defaultdict(list)
    for a in attempts:
        by_delivery[a.delivery_id].append(a)
    for r in rows:
        tried = by_delivery[r.id]
        assert [a.attempt for a in tried] == list(range(1, r.attempts + 1)), r.id
        assert tried[-1].status_code == 200
        for earlier, later in itertools.pairwise(tried):
            assert earlier.started_at.timestamp() + earlier.duration_ms / 1000 <= later.started_at.timestamp()
    retried = [r for r in rows if r.attempts > 1]
    assert len(retried) >= ORDERS // 10, "about a fifth of the messages are scripted to fail once"
    assert all(by_delivery[r.id][0].status_code == 500 and r.attempts == 2 for r in retried)

    # The receiver's view: never two requests of one message in flight at once; every request was a recorded
    # attempt (none sent twice), signed, and carrying its delivery's id as webhook-id on every attempt.
    assert overlapping(exchanges) == []
    per_id = Counter(e.webhook_id for e in exchanges)
    assert per_id == {r.id: r.attempts for r in rows}
    by_order = {r.order_id: r for r in rows}
    platform_secret = {r.id: secrets[r.platform_id] for r in rows}
    for e in exchanges:
        body = json.loads(e.body)
        assert by_order[body["data"]["order"]["id"]].id == e.webhook_id
        Webhook(platform_secret[e.webhook_id]).verify(e.body, e.headers)
    assert {e.webhook_id for e in exchanges if e.status == 500} == {r.id for r in retried}

    # Both processes did work, and every attempt came from one of them.
    workers = {a.worker for a in attempts}
    assert len(workers) == 2, workers
    assert all(any(p.owns(w) for p in procs) for w in workers)
    per_worker = Counter(a.worker for a in attempts)
    handed_over = [r for r in retried if len({a.worker for a in by_delivery[r.id]}) == 2]
    print(f"attempts per worker: {dict(per_worker)}; retried: {len(retried)}, by the other process: {len(handed_over)}")
    assert min(per_worker.values()) >= 10, per_worker
    assert handed_over, "with ~100 retries some must have been taken by the other process"
