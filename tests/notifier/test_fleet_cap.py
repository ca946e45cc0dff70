"""The per-platform cap holds across independent notifier processes (not one supervisor's children): on
PostgreSQL every claim counts the live leases of the whole fleet."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from services.notifier.tables import delivery_attempts
from tests.conftest import PG_ADMIN_URL

from .fleet import (
    Exchange,
    NotifierProcess,
    TrackingReceiver,
    issue_orders,
    register_platforms,
    wait_for_delivered,
    wait_until_claiming,
    world,
)

pytestmark = pytest.mark.postgres

CAP, ORDERS = 2, 16


def most_at_once(exchanges: list[Exchange]) -> int:
    """The largest number of requests the receiver had in flight at one moment."""
    edges = sorted([(e.arrived, 1) for e in exchanges] + [(e.ended, -1) for e in exchanges])
    now = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: back-to-back is not overlap
        now += step
        peak = max(peak, now)
    return peak


def test_two_independent_notifiers_never_send_one_platform_more_than_its_cap(pg_url: str, tmp_path: Path) -> None:
    database = pg_url.rsplit("/", 1)[1]
    container = world(pg_url)
    # Slow answers keep every slot full for the whole run: each process alone would fill its own CAP.
    with TrackingReceiver(delay=0.3) as receiver:
        secrets = register_platforms(container, receiver, 1)
        procs: list[NotifierProcess] = []
        try:
            procs = [
                NotifierProcess(pg_url, f"capped-{n}", tmp_path, TAKEDOWN_WEBHOOK_PER_PLATFORM=str(CAP)) for n in (1, 2)
            ]
            wait_until_claiming(PG_ADMIN_URL, database, [p.name for p in procs], procs)
            issue_orders(container, list(secrets), ORDERS, "CAP")
            wait_for_delivered(container, ORDERS, procs, timeout=30)
            assert [p.terminate() for p in procs] == [0, 0], [p.log() for p in procs]
        finally:
            for p in procs:
                p.terminate()
        exchanges = receiver.exchanges()
    try:
        with container.db.read() as conn:
            workers = conn.execute(select(delivery_attempts.c.worker)).scalars().all()
    finally:
        container.close()
    assert len(exchanges) == ORDERS and {e.status for e in exchanges} == {200}
    # Each process alone stops at CAP; counting only its own requests, the two together reached 2 * CAP.
    assert most_at_once(exchanges) == CAP, "the platform got more (or never as many) requests at once as its cap"
    assert all(any(p.owns(w) for p in procs) for w in workers), workers  # every attempt by one of the two
