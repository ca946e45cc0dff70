"""Recording finished webhook attempts: the delivery's new state, the attempt log, and the facts in the order's stream.

Batched because a delivery is a handful of statements: whatever finished during one commit is recorded in the
next transaction, with one statement per table. An attempt whose lease was lost is skipped (another worker owns
the delivery now).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter, Histogram
from sqlalchemy import Connection
from structlog.contextvars import bound_contextvars

from services.notifier import outbox
from services.notifier.outbox import SUPERVISOR, Claimed
from services.notifier.policy import DEFAULT_POLICY, RetryPolicy, classify, parse_retry_after
from services.notifier.sender import AttemptResult
from services.orders.domain import (
    NOT_NOTIFIED,
    Command,
    DomainError,
    Escalate,
    RecordDelivery,
    RecordDeliveryFailure,
)
from shared.clock import Clock
from shared.db import Database, TransientError, UniqueViolation
from shared.eventstore import ConcurrencyError

log = logging.getLogger("takedown.notifier")

ATTEMPTS = Counter("takedown_webhook_attempts_total", "Webhook attempts by outcome", ["outcome"])
LATENCY = Histogram(
    "takedown_webhook_attempt_seconds",
    "Duration of webhook attempts",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
DISABLED = Counter("takedown_webhook_endpoints_disabled_total", "Endpoints disabled after 410 Gone")
DEAD = Counter("takedown_webhook_dead_letters_total", "Deliveries given up after the last attempt")

EXCERPT_CHARS = 500
# A dead order.issued push is evidence that the platform was not notified: that level, early (once per order).
DEAD_LETTER_ESCALATION_LEVEL = NOT_NOTIFIED


class OrderFacts(Protocol):
    """Records commands on orders in the caller's transaction; a refused command comes back as its DomainError."""

    def __call__(
        self, conn: Connection, commands: Sequence[tuple[str, Command, dict[str, Any]]]
    ) -> Sequence[object]: ...


class EndpointGone(Protocol):
    """Stops pushes to a platform whose endpoint answered 410 Gone, in the caller's transaction (the registry's)."""

    def __call__(self, conn: Connection, platform_id: str, reason: str, now: datetime) -> None: ...


@dataclass(frozen=True)
class Plan:
    """One finished attempt and what it does to its delivery row."""

    job: Claimed
    result: AttemptResult
    started: datetime
    outcome: str
    state: str
    last_error: str | None
    next_attempt_at: datetime | None = None  # None: unchanged
    delivered_at: datetime | None = None

    def delivery_row(self) -> dict[str, Any]:
        """The delivery's new state (the lease is given up)."""
        return {
            "id": self.job.id,
            "state": self.state,
            "attempts": self.job.attempt,
            "last_error": self.last_error,
            "next_attempt_at": self.next_attempt_at,
            "delivered_at": self.delivered_at,
            "lease_owner": None,
            "lease_expires_at": None,
        }

    def attempt_row(self, worker: str) -> dict[str, Any]:
        """The attempt's line in the attempt log."""
        r = self.result
        return {
            "delivery_id": self.job.id,
            "attempt": self.job.attempt,
            "worker": worker,
            "started_at": self.started,
            "duration_ms": float(r.duration_ms),
            "status_code": r.status_code,
            "error_kind": r.error_kind,
            "response_excerpt": (r.response_excerpt or "")[:EXCERPT_CHARS],
        }

    def order_commands(self) -> list[Command]:
        """The facts the attempt adds to its order: delivered (first 2xx of the order's push), or a failed attempt."""
        job, result = self.job, self.result
        if job.platform_id == SUPERVISOR:
            return []  # the supervisor's copy: its attempts are in the delivery log, not in the order's history
        if self.outcome == "delivered":
            if job.webhook_type != "order.issued":
                return []
            # The worker's jobs carry the endpoint read with the claim: the URL pushed to and who was on record.
            endpoint = getattr(job, "endpoint", None)
            return [
                RecordDelivery(
                    delivery_id=job.id,
                    attempt=job.attempt,
                    url=getattr(endpoint, "url", None),
                    representative=getattr(endpoint, "representative", None),
                )
            ]
        commands: list[Command] = [
            RecordDeliveryFailure(
                delivery_id=job.id,
                webhook_type=job.webhook_type,
                attempt=job.attempt,
                error_kind=result.error_kind or "http_status",
                duration_ms=float(result.duration_ms),
                status_code=result.status_code,
                next_attempt_at=self.next_attempt_at,
            )
        ]
        if self.state == "dead" and self.outcome != "gone" and job.webhook_type == "order.issued":
            reason = f"webhook delivery {job.id} failed after {job.attempt} attempts"
            commands.append(Escalate(level=DEAD_LETTER_ESCALATION_LEVEL, reason=reason, dead_letter=True))
        return commands


def plan(
    job: Claimed, result: AttemptResult, started: datetime, now: datetime, policy: RetryPolicy, rng: random.Random
) -> Plan:
    """What an attempt does to its delivery: delivered, retried later, dead (410 or out of attempts)."""
    outcome = classify(result.status_code, result.error_kind)
    error = result.error_kind or (f"HTTP {result.status_code}" if result.status_code else None)
    planned = Plan(job, result, started, outcome, state="pending", last_error=error)
    if outcome == "delivered":
        return replace(planned, state="delivered", delivered_at=now, last_error=None)
    if outcome == "gone":
        return replace(planned, state="dead", last_error="410 Gone: endpoint disabled")
    retry_after = parse_retry_after(result.retry_after, now) if outcome == "retry_after" else None
    delay = policy.next_delay(job.attempt - job.retry_base, rng, retry_after)
    if delay is None:
        return replace(planned, state="dead", last_error=f"gave up after {job.attempt} attempts: {error}")
    return replace(planned, next_attempt_at=now + timedelta(seconds=delay))


def _log_finished(p: Plan) -> None:
    """One line per recorded attempt: what came back, how long it took, and what happens next.

    A delivered attempt's line is DEBUG, every other outcome's INFO: a JSON line costs about 100 us through the
    logging bridge, 5% of a delivery's CPU in bench/notifier.py, and a success is already in the attempt log
    (`GET /v1/orders/{id}/deliveries`) and in `takedown_webhook_attempts_total`.
    """
    level = logging.DEBUG if p.outcome == "delivered" else logging.INFO
    if not log.isEnabledFor(level):
        return
    r = p.result
    log.log(
        level,
        "webhook attempt %s",
        p.outcome,
        extra={
            "outcome": p.outcome,
            "status_code": r.status_code,
            "error_kind": r.error_kind,
            "duration_ms": r.duration_ms,
            "state": p.state,
            "next_attempt_at": p.next_attempt_at.isoformat() if p.next_attempt_at else None,
        },
    )


class Recorder:
    """Records batches of finished attempts for one worker (the lease owner named `worker`)."""

    def __init__(
        self,
        db: Database,
        order_facts: OrderFacts,
        clock: Clock,
        worker: str,
        policy: RetryPolicy = DEFAULT_POLICY,
        rng: random.Random | None = None,
        *,
        endpoint_gone: EndpointGone,
    ) -> None:
        self.db, self.order_facts, self.clock, self.worker = db, order_facts, clock, worker
        self.endpoint_gone = endpoint_gone
        self.policy = policy
        self.rng = rng or random.Random()

    def record_many(self, attempts: Sequence[tuple[Claimed, AttemptResult, datetime]]) -> None:
        """Record attempts, their deliveries' new states and their orders' facts, in one transaction."""
        now = self.clock.now()
        plans = [plan(job, result, started, now, self.policy, self.rng) for job, result, started in attempts]
        for p in plans:
            ATTEMPTS.labels(p.outcome).inc()
            LATENCY.observe(p.result.duration_ms / 1000)
        self._write(plans, now)

    def _write(self, plans: list[Plan], now: datetime) -> None:
        """Write the plans together; retry what a race explains, and isolate what one attempt broke."""
        try:
            # An order changed under us (e.g. acknowledged just now), or a deadlock: record against the new state.
            written = self.db.run(
                lambda conn: self._write_once(conn, plans, now), retry_on=(ConcurrencyError, TransientError)
            )
        except UniqueViolation:
            if len(plans) == 1:
                with bound_contextvars(**plans[0].job.log_fields()):
                    log.warning("attempt already recorded by another worker")
                return
            self._one_by_one(plans, now)  # find the one another worker recorded; record the rest
            return
        except (ConcurrencyError, TransientError):
            if len(plans) == 1:
                with bound_contextvars(**plans[0].job.log_fields()):
                    log.error("attempt not recorded: the order kept changing")
                return  # the lease expires and the attempt is made again
            self._one_by_one(plans, now)
            return
        except Exception:
            if len(plans) == 1:
                raise
            log.exception("recording %d attempts together failed; recording them one by one", len(plans))
            self._one_by_one(plans, now)
            return
        for p in written:
            with bound_contextvars(**p.job.log_fields()):
                _log_finished(p)
                if p.outcome == "gone":
                    DISABLED.inc()
                    log.error("ALERT: platform %s webhook answered 410 Gone; endpoint disabled", p.job.platform_id)
                elif p.state == "dead":
                    DEAD.inc()
                    log.error("ALERT: delivery %s dead-lettered after %s attempts", p.job.id, p.job.attempt)

    def _one_by_one(self, plans: list[Plan], now: datetime) -> None:
        # One attempt must not cost the others theirs: each on its own, so only the culprit is left over.
        for p in plans:
            try:
                self._write([p], now)
            except Exception:
                with bound_contextvars(**p.job.log_fields()):
                    log.exception("attempt not recorded")

    def _write_once(self, conn: Connection, plans: list[Plan], now: datetime) -> list[Plan]:
        """One transaction: the deliveries, the attempt rows, the orders' facts. Returns the plans written."""
        owned = outbox.settle(conn, self.worker, [p.delivery_row() for p in plans])
        mine = [p for p in plans if p.job.id in owned]
        for p in plans:
            if p.job.id not in owned:
                with bound_contextvars(**p.job.log_fields()):
                    log.warning("lease lost before the attempt was recorded")
        if not mine:
            return []
        outbox.log_attempts(conn, [p.attempt_row(self.worker) for p in mine])
        actor = f"notifier:{self.worker}"
        commands = [
            (p.job.order_id, c, {"actor": actor, "role": "system", "delivery_id": p.job.id})
            for p in mine
            for c in p.order_commands()
        ]
        for (order_id, command, _), outcome in zip(commands, self.order_facts(conn, commands), strict=True):
            if isinstance(outcome, DomainError):
                # e.g. already notified through the inbox, or the order was withdrawn meanwhile: the attempt is
                # still in the delivery log; the order's own history has nothing to add.
                log.info("order %s: %s not recorded: %s", order_id, type(command).__name__, outcome.reason)
        for platform_id in sorted({p.job.platform_id for p in mine if p.outcome == "gone"}):
            self.endpoint_gone(conn, platform_id, "410 Gone from the webhook endpoint", now)
        return mine
