"""SIGKILL a notifier process in the middle of deliveries: another one finishes them once the leases expire.

The receiver answers slowly (1.5 s), so when the first `takedown notifier` process is killed some of its
deliveries are on the wire: sent, never answered to it, never recorded. A second process must leave them alone
while the dead worker's leases are live, then deliver every one of them (same webhook-id) once they expire.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

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

ORDERS = 32
PLATFORMS = 4  # x 4 slots per platform: 16 deliveries in flight at a time
SLOW = 1.5
TIMEOUT_S = 3
LEASE_MARGIN_S = 2  # the leases of the killed worker run out by themselves, TIMEOUT_S + this after the claim

pytestmark = pytest.mark.postgres


def test_killed_notifier_is_taken_over_after_its_leases_expire(pg_url: str, tmp_path: Path) -> None:
    database = pg_url.rsplit("/", 1)[1]
    container = world(pg_url)
    env = {"TAKEDOWN_WEBHOOK_TIMEOUT_S": str(TIMEOUT_S)}
    env["TAKEDOWN_WEBHOOK_LEASE_MARGIN_S"] = str(LEASE_MARGIN_S)
    wall_offset = time.time() - time.monotonic()  # receiver times are monotonic; leases are wall-clock
    procs: list[NotifierProcess] = []
    try:
        with TrackingReceiver(delay=SLOW) as receiver:
            secrets = register_platforms(container, receiver, PLATFORMS)
            first = NotifierProcess(pg_url, "notifier-first", tmp_path, **env)
            procs.append(first)
            wait_until_claiming(PG_ADMIN_URL, database, [first.name], procs)
            order_ids = issue_orders(container, list(secrets), ORDERS, "C")

            # Mid-way: some deliveries recorded, others sent and waiting for their slow answers.
            deadline = time.monotonic() + 20
            while True:
                with container.db.read() as conn:
                    done = conn.execute(select(deliveries.c.id).where(deliveries.c.state == "delivered")).all()
                if len(done) >= 4 and len(receiver.in_flight()) >= 4:
                    break
                assert time.monotonic() < deadline, f"never mid-way: {len(done)} done\n{first.log()}"
                time.sleep(0.05)
            first.kill()
            killed_at = time.monotonic()

            with container.db.read() as conn:
                pending = conn.execute(select(deliveries).where(deliveries.c.state == "pending")).all()
            leases = {r.id: r.lease_expires_at for r in pending if r.lease_owner is not None}
            orphans = set(leases)
            assert orphans, "the killed worker held no leases"
            assert all(first.owns(r.lease_owner) for r in pending if r.lease_owner is not None)
            dead_worker = next(r.lease_owner for r in pending if r.lease_owner is not None)
            on_the_wire = {wid for wid, _ in receiver.in_flight()}
            assert on_the_wire and on_the_wire <= orphans, "requests in flight belong to leased deliveries"

            second = NotifierProcess(pg_url, "notifier-second", tmp_path, **env)
            procs.append(second)
            wait_until_claiming(PG_ADMIN_URL, database, [second.name], procs[1:])
            # The leases run out by themselves (webhook_timeout_s + webhook_lease_margin_s after the claim).
            released = {wid: lease.timestamp() for wid, lease in leases.items()}

            wait_for_delivered(container, ORDERS, procs[1:], timeout=15 + TIMEOUT_S + LEASE_MARGIN_S)
            assert second.terminate() == 0, second.log()
            exchanges = receiver.exchanges()
        with container.db.read() as conn:
            rows = conn.execute(select(deliveries)).all()
            attempts = conn.execute(select(delivery_attempts)).all()
            delivered_events = Counter(
                conn.execute(select(events.c.stream_id).where(events.c.type == "order.delivered")).scalars()
            )
    finally:
        for p in procs:
            p.terminate()
        container.close()

    # Nothing lost: every order delivered, its clock started once.
    assert Counter(r.state for r in rows) == {"delivered": ORDERS}
    assert delivered_events == dict.fromkeys(order_ids, 1)
    # Each orphan: sent by the dead worker (unrecorded), then sent again with the same webhook-id and recorded as
    # its attempt 1 by the second worker; never two of its requests in flight at once.
    by_delivery = {r.id: r for r in rows}
    for wid in orphans:
        recorded = [a for a in attempts if a.delivery_id == wid]
        assert [(a.attempt, second.owns(a.worker), a.status_code) for a in recorded] == [(1, True, 200)]
        assert by_delivery[wid].attempts == 1
    # While the dead worker's lease was live nobody sent its deliveries again.
    for e in exchanges:
        if e.webhook_id in orphans and e.arrived > killed_at:
            assert e.arrived + wall_offset >= released[e.webhook_id] - 0.05, "sent again while the lease was live"
    for a in attempts:
        if a.delivery_id in orphans:
            assert a.started_at.timestamp() >= released[a.delivery_id] - 0.05
    sent = Counter(e.webhook_id for e in exchanges)
    assert all(sent[wid] >= 2 for wid in on_the_wire)
    assert overlapping(exchanges) == []
    assert all(a.worker == dead_worker or second.owns(a.worker) for a in attempts)
    assert len({(a.delivery_id, a.attempt) for a in attempts}) == len(attempts)
