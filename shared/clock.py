"""The one clock: every timestamp in the system comes from an injected Clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger("takedown.clock")


class Clock(Protocol):
    """Something that tells the current time (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time of this host, in UTC."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class DatabaseClock:
    """The database server's time, read through this host's clock: every host judges a deadline by one clock.

    Each host's clock may be off by seconds or more; PostgreSQL's is one for all of them. Reading it per call would
    cost a round trip per timestamp, so the offset between the two is measured (from the midpoint of the round
    trip) once when the clock is made and again in the background at most every `every`; `now()` itself never
    waits on the database, as the event loop calls it. A failed read keeps the last offset.
    """

    def __init__(
        self,
        read_time: Callable[[], datetime],
        local: Clock | None = None,
        every: timedelta = timedelta(seconds=30),
        monotonic: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self._read, self._local, self._every, self._monotonic = read_time, local or SystemClock(), every, monotonic
        self._spawn = spawn or (lambda work: threading.Thread(target=work, name="db-clock", daemon=True).start())
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        self._measuring = False
        self._measured_at = monotonic()
        self._measure()

    @property
    def offset(self) -> timedelta:
        """The database's time minus this host's, as last measured."""
        return self._offset

    def now(self) -> datetime:
        """This host's time corrected to the database's (a stale offset is refreshed in the background)."""
        if self._monotonic() - self._measured_at >= self._every.total_seconds():
            with self._lock:
                start, self._measuring = not self._measuring, True
            if start:
                self._spawn(self._measure)
        return self._local.now() + self._offset

    def _measure(self) -> None:
        before = self._local.now()
        try:
            remote = self._read()
        except Exception as exc:  # noqa: BLE001 - the last offset stands; tried again after `every`
            log.warning("could not read the database's clock; the last offset stands: %s", exc)
        else:
            after = self._local.now()
            self._offset = remote - (before + (after - before) / 2)
        with self._lock:
            self._measured_at, self._measuring = self._monotonic(), False


class FrozenClock:
    """A clock that only moves when told to: for tests and simulations."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start time")
        self._now = start

    def now(self) -> datetime:
        """Return the frozen time."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward and return the new time."""
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to a given time."""
        self._now = when
