"""The sequencer: gives global positions to committed events, in its own short transactions (PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time

from shared.db import Database
from shared.eventstore.store import EventStore

log = logging.getLogger("takedown.sequencer")


class Sequencer:
    """Runs `EventStore.sequence` on demand (`wake`) and on a short poll; a no-op on SQLite."""

    def __init__(
        self,
        db: Database,
        store: EventStore,
        interval_s: float = 0.05,
        min_gap_s: float = 0.005,
        batch: int = 10_000,
        log_every_s: float = 60.0,
    ) -> None:
        self.db, self.store, self.interval_s, self.min_gap_s, self.batch = db, store, interval_s, min_gap_s, batch
        # At most one logged failure per log_every_s: with the database down the loop fails 20 times a second.
        self.log_every_s = log_every_s
        self._failures = 0  # since the last logged one
        self._logged_at: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def needed(self) -> bool:
        """Only PostgreSQL numbers events after commit; SQLite numbers them inline."""
        return self.db.dialect == "postgresql"

    def run_once(self) -> int:
        """Number whatever is ready now; returns how many events got positions."""
        if not self.needed:
            return 0
        with self.db.transaction() as conn:
            return self.store.sequence(conn, batch=self.batch)

    def catch_up(self, max_rounds: int = 1000) -> None:
        """Number everything committed so far (for tests, tools and shutdown)."""
        for _ in range(max_rounds):
            if self.run_once() == 0:
                with self.db.read() as conn:
                    pending = conn.exec_driver_sql(
                        "SELECT count(*) FROM events e WHERE NOT EXISTS "
                        "(SELECT 1 FROM event_positions p WHERE p.event_pk = e.id)"
                    ).scalar_one()
                if not pending:
                    return
                self._stop.wait(0.005)

    def wake(self) -> None:
        """Ask the background loop to run now (called after an append commits)."""
        self._wake.set()

    def start(self) -> None:
        """Run in a daemon thread until `stop`."""
        if not self.needed or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="sequencer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background loop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                # Run again at once only when a batch was full; otherwise the wakes of a burst of commits
                # merge into the next run (min_gap_s), so numbering costs one transaction per gap, not per commit.
                while self.run_once() >= self.batch and not self._stop.is_set():
                    pass
            except Exception:  # noqa: BLE001 - a dropped connection must not kill the loop; retry next tick
                self._failed()
                self._stop.wait(self.interval_s)
            self._stop.wait(self.min_gap_s)

    def _failed(self) -> None:
        """Log the failure being handled, unless one was logged less than log_every_s ago (then count it)."""
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < self.log_every_s:
            self._failures += 1
            return
        suppressed, self._failures, self._logged_at = self._failures, 0, now
        more = f" ({suppressed} more failures since the last one logged)" if suppressed else ""
        log.exception("numbering events failed; retrying%s", more)
