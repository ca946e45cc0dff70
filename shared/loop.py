"""The background loop of a tailing reader (sequencer, projections, ledger feeder): a daemon thread that runs
one pass on `wake` (a commit in this process) and on a short poll (commits elsewhere), and survives failures.
`TailingReader` is the one place those readers get their wake/start/stop from."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Required, TypedDict, Unpack


class BackgroundLoop:
    """Runs `work()` in a daemon thread until `stop`; a failure is logged (rate-limited) and retried next tick."""

    def __init__(
        self,
        name: str,
        work: Callable[[], None],
        log: logging.Logger,
        *,
        interval_s: float,
        min_gap_s: float = 0.0,
        log_every_s: float = 60.0,
        failure: str = "a pass failed; retrying",
    ) -> None:
        self.name, self.work, self.log, self.failure = name, work, log, failure
        self.interval_s, self.min_gap_s = interval_s, min_gap_s
        # At most one logged failure per log_every_s: with the database down, a loop fails many times a second.
        self.log_every_s = log_every_s
        self._held_back = 0  # failures since the last one logged
        self._logged_at: float | None = None
        self._wake = threading.Event()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Run now instead of at the next poll (thread-safe)."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self.stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread; a pass in progress finishes its transaction."""
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.work()
            except Exception:  # noqa: BLE001 - a dropped connection must not end the loop: retry next tick
                self._failed()
                self.stopping.wait(self.interval_s)
            if self.min_gap_s:
                # The wakes of a burst of commits merge into the next pass: one transaction per gap, not per commit.
                self.stopping.wait(self.min_gap_s)

    def _failed(self) -> None:
        """Log the failure being handled, unless one was logged less than log_every_s ago (then count it)."""
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < self.log_every_s:
            self._held_back += 1
            return
        held_back, self._held_back, self._logged_at = self._held_back, 0, now
        more = f" ({held_back} more failures since the last one logged)" if held_back else ""
        self.log.exception("%s%s", self.failure, more)


class LoopOptions(TypedDict, total=False):
    """`BackgroundLoop`'s tuning, as a tailing reader passes it on."""

    interval_s: Required[float]
    min_gap_s: float
    log_every_s: float
    failure: str


class TailingReader(ABC):
    """A reader that follows the event store by position in a `BackgroundLoop`: subclasses write `_pass`."""

    def __init__(self, name: str, log: logging.Logger, **options: Unpack[LoopOptions]) -> None:
        self.loop = BackgroundLoop(name, self._pass, log, **options)

    @property
    def needed(self) -> bool:
        """Whether this reader has background work on this database (`start` is a no-op otherwise)."""
        return True

    def wake(self) -> None:
        """Ask the background loop to run now instead of at the next poll (called after a commit here)."""
        self.loop.wake()

    def start(self) -> None:
        """Run in a daemon thread until `stop`."""
        if self.needed:
            self.loop.start()

    def stop(self) -> None:
        """Stop the background loop; a pass in progress finishes its transaction."""
        self.loop.stop()

    @abstractmethod
    def _pass(self) -> None:
        """One background pass: catch up with what is committed now."""

    def _drain(self, step: Callable[[], int], batch: int) -> None:
        """Run `step` again at once while it fills a whole batch (more is waiting), unless the loop is stopping."""
        while step() >= batch and not self.loop.stopping.is_set():
            pass
