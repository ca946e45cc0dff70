"""The sweep: escalates orders whose escalation fell due, and moves SLA statuses that change by time alone.

SLA status over time has one owner, the SLA projection (`sla_orders`): the sweep moves it (`SlaProjection.advance`)
and every reader shows it as of now through `sla_clock`. The order view keeps only the next escalation's time.

It runs as an APScheduler interval job in every process that runs workers (an in-memory job store: instances
never share one) and alone as `takedown scheduler`. Instances coordinate only through the database: due orders
are claimed with `FOR UPDATE SKIP LOCKED` on the order view's `next_due_at` index (the next escalation) (written in each command's own
transaction, so the sweep never waits for the sequencer), and the unique (order, level) key of `escalations`
makes a second escalation of one level impossible whatever the number of instances. Its cost follows the number
of due orders, not of open ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import Counter
from sqlalchemy import Connection

from services.orders import views
from services.orders.domain import Command, DomainError, Escalate
from services.orders.service import OrderService
from services.orders.sla_clock import SlaPolicy, due_escalations, next_due
from services.sla.projection import SlaProjection
from services.sla.tables import escalations
from shared.bus import Published
from shared.clock import Clock
from shared.db import Database, TransientError, UniqueViolation
from shared.eventstore import ConcurrencyError, EventStore

log = logging.getLogger("takedown.sweep")

ESCALATED = Counter("takedown_escalations_total", "Orders escalated by the sweep, by level", ["level"])


def record_escalation(conn: Connection, published: Published) -> None:
    """The unique (order, level) row of an `order.escalated` event, in the command's transaction."""
    data = published.event.data
    conn.execute(
        escalations.insert().values(
            order_id=published.event.stream_id,
            level=int(data["level"]),
            escalated_at=published.event.recorded_at,
            event_id=published.event.event_id,
        )
    )


class Sweep:
    """One pass over what is due: escalations first, then time-based status changes of the SLA projection."""

    def __init__(
        self,
        db: Database,
        store: EventStore,
        orders: OrderService,
        projection: SlaProjection,
        policy: SlaPolicy,
        clock: Clock,
        batch: int = 200,
    ) -> None:
        self.db, self.store, self.orders, self.projection = db, store, orders, projection
        self.policy, self.clock, self.batch = policy, clock, batch

    def run_once(self, max_batches: int = 100) -> int:
        """Sweep until nothing is due now (at most `max_batches` batches); returns how many orders were looked at."""
        total = 0
        for _ in range(max_batches):
            # A racing command or sweeper (a stream moved, a level just recorded): claim and decide again.
            done = self.db.run(self._escalate_batch, retry_on=(ConcurrencyError, TransientError, UniqueViolation))
            total += done
            if done < self.batch:
                break
        for _ in range(max_batches):
            if self.db.run(lambda conn: self.projection.advance(conn, self.clock.now(), self.batch)) < self.batch:
                break
        return total

    def _escalate_batch(self, conn: Connection) -> int:
        """Claim a batch of due orders, record what fell due, and set each order's next due time."""
        now = self.clock.now()
        due = views.claim_due(conn, now, self.batch)
        if not due:
            return 0
        # One read of the claimed streams: the same states decide what is due and are handed to `record_many`.
        states = self.orders.repository.load(conn, due)
        commands: list[tuple[str, Command, dict[str, Any]]] = []
        quiet: dict[str, datetime | None] = {}
        for order_id in due:
            state = states.get(order_id)
            if state is None:
                quiet[order_id] = None
                continue
            found = due_escalations(state, self.policy, now)
            for escalation in found:
                commands.append((order_id, Escalate(level=escalation.level, reason=escalation.reason), _META))
            if not found:
                quiet[order_id] = next_due(state, self.policy)
        outcomes: Sequence[object] = self.orders.record_many(conn, commands, loaded=states) if commands else []
        for (order_id, command, _), outcome in zip(commands, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                # Should not happen (the same rules chose it); look again later rather than every pass.
                log.warning("order %s: escalation refused: %s", order_id, outcome.reason)
                quiet[order_id] = now + RETRY_REFUSED
            elif isinstance(command, Escalate):
                ESCALATED.labels(str(command.level)).inc()
                log.info("order %s escalated, level %s: %s", order_id, command.level, command.reason)
        views.set_due(conn, quiet)
        return len(due)


_META = {"actor": "sweep", "role": "system"}
RETRY_REFUSED = timedelta(minutes=5)


@dataclass(frozen=True)
class Job:
    """Another interval job of the scheduler, given by the wiring (e.g. publishing finished transparency months)."""

    name: str
    run: Callable[[], object]
    interval_s: float


class Scheduler:
    """The sweep and the other jobs as APScheduler interval jobs (in-memory job store, one run of each at a time in
    this process; instances coordinate through the database, as each job's own docstring says)."""

    def __init__(self, sweep: Sweep, interval_s: float, jobs: Sequence[Job] = ()) -> None:
        self.sweep, self.interval_s, self.jobs = sweep, interval_s, list(jobs)
        self._scheduler: BackgroundScheduler | None = None

    def _run(self) -> None:
        try:
            self.sweep.run_once()
        except Exception:
            log.exception("the sweep failed; it runs again at the next interval")

    @staticmethod
    def _guarded(job: Job) -> Callable[[], None]:
        def run() -> None:
            try:
                job.run()
            except Exception:
                log.exception("scheduler job %s failed; it runs again at the next interval", job.name)

        return run

    def start(self) -> None:
        """Start the interval job (and run it once now)."""
        if self._scheduler is not None:
            return
        scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.add_job(
            self._run, "interval", seconds=self.interval_s, id="sweep", next_run_time=self.sweep.clock.now()
        )
        for job in self.jobs:
            scheduler.add_job(
                self._guarded(job),
                "interval",
                seconds=job.interval_s,
                id=job.name,
                next_run_time=self.sweep.clock.now(),
                # Its first run is now by the injected clock, however late that is by APScheduler's own: an hourly
                # job whose start-up run were skipped as missed would wait an hour.
                misfire_grace_time=None,
            )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop the job; a sweep in progress finishes its transaction."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
