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


def test_the_offset_is_measured_at_the_round_trips_midpoint_and_kept_between_measures() -> None:
    local, ticks = FrozenClock(T0), iter([0.0, 10.0, 31.0, 40.0])
    reads: list[datetime] = []

    def read() -> datetime:
        local.advance(timedelta(milliseconds=20))  # the round trip takes 20 ms of local time
        reads.append(T0 + timedelta(hours=2))
        return reads[-1]

    clock = DatabaseClock(read, local, every=timedelta(seconds=30), monotonic=lambda: next(ticks))
    assert clock.now() == T0 + timedelta(hours=2, milliseconds=10)  # read at the midpoint: 10 ms of 20 later
    assert clock.offset == timedelta(hours=2, milliseconds=-10) and len(reads) == 1
    local.advance(timedelta(seconds=5))
    assert clock.now() == T0 + timedelta(hours=2, seconds=5, milliseconds=10) and len(reads) == 1  # not yet again
    clock.now()
    assert len(reads) == 2  # 31 s after the first: measured again


def test_a_failed_read_keeps_the_last_offset() -> None:
    local, answers = FrozenClock(T0), [T0 + timedelta(minutes=5)]
    ticks = iter([0.0, 60.0])

    def read() -> datetime:
        if not answers:
            raise ConnectionError("the database is away")
        return answers.pop()

    clock = DatabaseClock(read, local, monotonic=lambda: next(ticks))
    assert clock.now() == T0 + timedelta(minutes=5)
    assert clock.now() == T0 + timedelta(minutes=5)  # the read failed: the offset stands


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
