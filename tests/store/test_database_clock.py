"""One clock for every host: on PostgreSQL the service reads the server's time through its own clock's offset,
so two hosts with skewed clocks judge the same deadline the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.bootstrap import bootstrap
from services.orders.sla_clock import DEFAULT_POLICY
from shared.clock import DatabaseClock, FrozenClock, SystemClock
from shared.db import Database, server_time
from tests.builders import T0, service_settings


class SkewedClock:
    """This host's clock, off by `skew`."""

    def __init__(self, skew: timedelta) -> None:
        self.skew = skew

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skew


def _now_inline(work: object) -> None:
    work()  # type: ignore[operator]  # the background refresh, run at once so the test can see it


def test_the_offset_is_measured_at_the_round_trips_midpoint_and_refreshed_when_stale() -> None:
    local, tick = FrozenClock(T0), [0.0]
    reads: list[datetime] = []

    def read() -> datetime:
        local.advance(timedelta(milliseconds=20))  # the round trip takes 20 ms of local time
        reads.append(T0 + timedelta(hours=2))
        return reads[-1]

    clock = DatabaseClock(read, local, every=timedelta(seconds=30), monotonic=lambda: tick[0], spawn=_now_inline)
    assert len(reads) == 1 and clock.offset == timedelta(hours=2, milliseconds=-10)  # at the midpoint, when made
    assert clock.now() == T0 + timedelta(hours=2, milliseconds=10)
    tick[0] = 29.0
    clock.now()
    assert len(reads) == 1  # not stale yet
    tick[0] = 31.0
    clock.now()
    assert len(reads) == 2  # stale: measured again


def test_now_never_waits_on_the_database_and_a_failed_read_keeps_the_offset() -> None:
    local, answers, tick = FrozenClock(T0), [T0 + timedelta(minutes=5)], [0.0]
    spawned: list[object] = []

    def read() -> datetime:
        if not answers:
            raise ConnectionError("the database is away")
        return answers.pop()

    clock = DatabaseClock(read, local, monotonic=lambda: tick[0], spawn=spawned.append)
    tick[0] = 60.0
    assert clock.now() == T0 + timedelta(minutes=5) and len(spawned) == 1  # handed to the background
    assert clock.now() == T0 + timedelta(minutes=5) and len(spawned) == 1  # one refresh at a time
    spawned[0]()  # type: ignore[operator]  # the refresh runs and fails: the offset stands
    assert clock.now() == T0 + timedelta(minutes=5)


@pytest.mark.postgres
def test_hosts_with_skewed_clocks_judge_a_deadline_alike(pg_db: Database) -> None:
    ahead = DatabaseClock(server_time(pg_db.engine), SkewedClock(timedelta(hours=2)))
    behind = DatabaseClock(server_time(pg_db.engine), SkewedClock(timedelta(minutes=-37)))
    a, b, real = ahead.now(), behind.now(), datetime.now(UTC)
    assert abs(a - b) < timedelta(seconds=1) and abs(a - real) < timedelta(seconds=1)
    # An order notified 23 h 59 min 59.5 s ago (by the server's clock) is not breached yet, on either host.
    notified = real - DEFAULT_POLICY.hours_for("other") * timedelta(hours=1) + timedelta(seconds=2)
    due = notified + DEFAULT_POLICY.hours_for("other") * timedelta(hours=1)
    assert (due > ahead.now()) == (due > behind.now()) is True
    assert (due > SkewedClock(timedelta(hours=2)).now()) is False  # the skewed host alone would call it breached


def test_the_service_takes_the_servers_clock_on_postgresql_and_its_own_on_sqlite(db_url: str) -> None:
    container = bootstrap(service_settings(db_url))
    try:
        expected = DatabaseClock if db_url.startswith("postgresql") else SystemClock
        assert isinstance(container.clock, expected)
        assert abs(container.clock.now() - datetime.now(UTC)) < timedelta(seconds=1)
    finally:
        container.close()
