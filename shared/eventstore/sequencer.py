"""The sequencer: gives global positions to committed events, in its own short transactions (PostgreSQL)."""

from __future__ import annotations

import logging
import time

from shared.db import Database
from shared.eventstore.store import EventStore
from shared.loop import TailingReader

log = logging.getLogger("takedown.sequencer")


class Sequencer(TailingReader):
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
        self.db, self.store, self.batch = db, store, batch
        super().__init__(
            "sequencer",
            log,
            interval_s=interval_s,
            min_gap_s=min_gap_s,
            log_every_s=log_every_s,
            failure="numbering events failed; retrying",
        )

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
                    pending, _ = self.store.unnumbered(conn)
                if not pending:
                    return
                time.sleep(0.005)

    def _pass(self) -> None:
        # Run again at once only when a batch was full; otherwise wait for the next wake or poll.
        self._drain(self.run_once, self.batch)
