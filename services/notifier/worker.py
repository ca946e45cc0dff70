"""The notifier: claims due deliveries from the outbox, signs and sends them, records every attempt.

Any number of notifier processes may run on one PostgreSQL: a claim is a row lease taken with
`FOR UPDATE SKIP LOCKED`, and an attempt is recorded only by the worker that still holds the lease, under a
unique (delivery, attempt) row. A killed worker's leases expire and another worker resumes its deliveries.
One slow or dead platform cannot hold up the others: each platform has a small concurrency cap, and a
worker does not claim work for a platform whose slots are full.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter as MetricCounter
from prometheus_client import Histogram
from sqlalchemy import Text, cast, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.notifier.policy import DEFAULT_POLICY, RetryPolicy, classify, parse_retry_after
from services.notifier.safety import Resolver, resolve_host, vetted_address, vetted_literal
from services.notifier.sender import AttemptResult, send
from services.notifier.signing import webhook_headers
from services.notifier.tables import deliveries, delivery_attempts
from services.orders.domain import Command, DomainError, Escalate, RecordDelivery, RecordDeliveryFailure
from services.orders.service import OrderService
from services.registry import service as registry
from services.registry.tables import platforms
from shared.bulk import bulk_insert, bulk_update
from shared.clock import Clock
from shared.db import Database, retryable
from shared.eventstore import ConcurrencyError

log = logging.getLogger("takedown.notifier")

DELIVERIES = MetricCounter("takedown_webhook_attempts_total", "Webhook attempts by outcome", ["outcome"])
LATENCY = Histogram(
    "takedown_webhook_attempt_seconds",
    "Duration of webhook attempts",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
DISABLED = MetricCounter("takedown_webhook_endpoints_disabled_total", "Endpoints disabled after 410 Gone")
DEAD = MetricCounter("takedown_webhook_dead_letters_total", "Deliveries given up after the last attempt")

EXCERPT_CHARS = 500
DEAD_LETTER_ESCALATION_LEVEL = 1


@dataclass(frozen=True)
class Job:
    """One claimed delivery: what to send, and which attempt this is."""

    id: str
    order_id: str
    platform_id: str
    webhook_type: str
    body: bytes  # the payload exactly as stored: what is signed and sent
    attempt: int
    retry_base: int
    # The platform's row, read in the claim's transaction (None: read it at attempt time).
    platform: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class NotifierConfig:
    """Limits and timings of one notifier process."""

    timeout_s: float = 15.0
    per_platform: int = 4
    total: int = 64
    poll_interval_s: float = 0.25
    lease_margin_s: float = 30.0
    allow_list: tuple[str, ...] = ()


class Notifier:
    """A delivery worker; run `run()` in an event loop, `wake()` from any thread when new jobs exist."""

    def __init__(
        self,
        db: Database,
        orders: OrderService,
        clock: Clock,
        config: NotifierConfig | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        rng: random.Random | None = None,
        worker_id: str | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.db, self.orders, self.clock = db, orders, clock
        self.config = config or NotifierConfig()
        self.policy = policy
        self.resolver = resolver
        self.rng = rng or random.Random()
        # Fits the 64-character lease_owner column whatever the host name's length.
        self.worker_id = (worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}:{id(self):x}")[:64]
        self._busy: Counter[str] = Counter()
        self._inflight: set[asyncio.Task[None]] = set()
        self._to_record: list[tuple[Job, AttemptResult, datetime, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._lookups: ThreadPoolExecutor | None = None  # host-name lookups (None: the loop's default threads)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------------------ loop

    def wake(self) -> None:
        """Claim at once instead of at the next poll (thread-safe; a no-op before `run` starts)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until `stop` is set; then let in-flight attempts finish."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        # Claims and the recorder use the loop's default threads; host-name lookups have threads of their own, so
        # that a DNS server that hangs cannot hold up recording (and so the leases) of every other platform.
        self._loop.set_default_executor(ThreadPoolExecutor(8, thread_name_prefix="notifier-db"))
        self._lookups = ThreadPoolExecutor(self.config.total, thread_name_prefix="notifier-dns")
        # One client per platform, its pool as large as the platform's slots: httpcore scans its whole pool on
        # every request and every response, so one shared 64-connection pool costs O(64) per request; and a
        # black-holed platform's connections then never sit in the pool the healthy platforms use.
        clients: dict[str, httpx.AsyncClient] = {}
        limits = httpx.Limits(
            max_connections=self.config.per_platform, max_keepalive_connections=self.config.per_platform
        )

        def client_for(platform_id: str) -> httpx.AsyncClient:
            client = clients.get(platform_id)
            if client is None:
                client = clients[platform_id] = httpx.AsyncClient(trust_env=False, limits=limits)
            return client

        # A stop wakes the loop like new work does, so that the wait below has one event to wait for.
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: self._wake.set() if self._wake else None)
        try:
            while not stop.is_set():
                self._wake.clear()
                claimed = 0
                if len(self._inflight) < self.config.total:
                    try:
                        jobs = await asyncio.to_thread(self.claim, self.config.total - len(self._inflight))
                    except Exception:
                        log.exception("claiming deliveries failed")
                        jobs = []
                    claimed = len(jobs)
                    for job in jobs:
                        self._busy[job.platform_id] += 1
                        task = asyncio.create_task(self._attempt(client_for(job.platform_id), job))
                        self._inflight.add(task)
                        task.add_done_callback(self._done(job.platform_id))
                if claimed == 0 or len(self._inflight) >= self.config.total:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.config.poll_interval_s):
                            await self._wake.wait()
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=self.config.timeout_s + 1)
        finally:
            stopper.cancel()
            if self._lookups is not None:
                self._lookups.shutdown(wait=False, cancel_futures=True)
            for client in clients.values():
                await client.aclose()

    async def drain(self, client: httpx.AsyncClient) -> int:
        """Claim every due delivery once and wait for their attempts (tests and tools; `run` is the loop)."""
        jobs = await asyncio.to_thread(self.claim, self.config.total)
        await asyncio.gather(*(self._attempt(client, job) for job in jobs))
        return len(jobs)

    def _done(self, platform_id: str) -> Any:
        def callback(task: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            self._busy[platform_id] -= 1
            if self._wake is not None:
                self._wake.set()  # a slot freed: there may be work for that platform

        return callback

    # ------------------------------------------------------------------------------------------ claim

    def claim(self, limit: int) -> list[Job]:
        """Lease up to `limit` due deliveries, skipping rows other workers hold and platforms at their cap."""
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.config.timeout_s + self.config.lease_margin_s)
        full = [p for p, n in self._busy.items() if n >= self.config.per_platform]
        due = (
            select(deliveries.c.id)
            .where(
                deliveries.c.state == "pending",
                deliveries.c.next_attempt_at <= now,
                (deliveries.c.lease_expires_at.is_(None)) | (deliveries.c.lease_expires_at < now),
            )
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if full:
            due = due.where(deliveries.c.platform_id.not_in(full))
        with self.db.transaction() as conn:
            if self.db.dialect == "postgresql":
                # The outbox's statistics go stale within seconds (rows leave `pending` as fast as they come), and
                # a planner that believes few rows are due reads and sorts all of them instead of walking the
                # due index in order and stopping after `limit`.
                conn.execute(text("SET LOCAL enable_bitmapscan = off"))
            rows = conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(due.scalar_subquery()))
                .values(lease_owner=self.worker_id, lease_expires_at=lease_until)
                .returning(
                    deliveries.c.id,
                    deliveries.c.order_id,
                    deliveries.c.platform_id,
                    deliveries.c.webhook_type,
                    cast(deliveries.c.payload, Text).label("body"),
                    deliveries.c.attempts,
                    deliveries.c.retry_base,
                )
            ).all()
            # The claimed jobs' platforms, read here (a worker thread) instead of on the event loop per attempt.
            found = (
                {
                    p.id: p
                    for p in conn.execute(select(platforms).where(platforms.c.id.in_({r.platform_id for r in rows})))
                }
                if rows
                else {}
            )
        jobs = [
            Job(
                r.id,
                r.order_id,
                r.platform_id,
                r.webhook_type,
                r.body.encode(),
                r.attempts + 1,
                r.retry_base,
                found.get(r.platform_id),
            )
            for r in rows
        ]
        # Per-platform cap inside one claim batch too: hand back what exceeds it.
        kept: list[Job] = []
        counts: Counter[str] = Counter()
        for job in jobs:
            if self._busy[job.platform_id] + counts[job.platform_id] < self.config.per_platform:
                counts[job.platform_id] += 1
                kept.append(job)
        if len(kept) < len(jobs):
            self._release([j.id for j in jobs if j not in kept])
        return kept

    def _release(self, ids: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids), deliveries.c.lease_owner == self.worker_id)
                .values(lease_owner=None, lease_expires_at=None)
            )

    # ---------------------------------------------------------------------------------------- attempt

    async def _attempt(self, client: httpx.AsyncClient, job: Job) -> None:
        try:
            platform = job.platform
            if platform is None:
                platform = await asyncio.to_thread(self._find_platform, job.platform_id)
            if platform is None or not platform.webhook_enabled or not platform.webhook_url:
                reason = "no webhook endpoint" if platform is None or not platform.webhook_url else "endpoint disabled"
                await asyncio.to_thread(self._cancel, job, f"{reason}: the order waits in the platform's inbox")
                return
            literal = vetted_literal(platform.webhook_url, self.config.allow_list)
            if literal is not None:
                address, why = literal  # an IP address: nothing to look up, the answer never changes
            else:
                try:
                    # A slow resolver must not outlive the lease (the attempt would then be sent twice).
                    async with asyncio.timeout(self.config.timeout_s):
                        address, why = await asyncio.get_running_loop().run_in_executor(
                            self._lookups,
                            functools.partial(
                                vetted_address, platform.webhook_url, self.config.allow_list, resolver=self.resolver
                            ),
                        )
                except TimeoutError:
                    address, why = None, "resolving the webhook host timed out"
            now = self.clock.now()
            if address is None:
                result = AttemptResult(None, "refused_destination", 0, why, None)  # type: ignore[arg-type]
            else:
                secrets = registry.signing_secrets(platform, now)
                headers = webhook_headers(secrets, job.id, int(now.timestamp()), job.body)
                # Connect to the address just checked, so a second DNS answer cannot point the request elsewhere.
                result = await send(client, platform.webhook_url, headers, job.body, self.config.timeout_s, address)
            await self._recorded(job, result, now)
        except Exception:
            log.exception("delivery %s attempt %s failed unexpectedly", job.id, job.attempt)

    async def _recorded(self, job: Job, result: AttemptResult, started: datetime) -> None:
        """Queue the attempt for the recorder and wait until it is committed (the lease is held until then)."""
        done = asyncio.get_running_loop().create_future()
        self._to_record.append((job, result, started, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_queued())
        await done

    async def _record_queued(self) -> None:
        """Record queued attempts, a batch at a time: what finishes during one commit goes into the next."""
        while self._to_record:
            batch, self._to_record = self._to_record, []
            try:
                await asyncio.to_thread(self.record_many, [(job, result, started) for job, result, started, _ in batch])
            except Exception:
                # Unrecorded attempts keep their leases; when those expire the attempts are made again.
                log.exception("recording %d attempts failed", len(batch))
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)

    def _find_platform(self, platform_id: str) -> Any:
        with self.db.read() as conn:
            return registry.find(conn, platform_id)

    def _cancel(self, job: Job, reason: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == job.id, deliveries.c.lease_owner == self.worker_id)
                .values(state="cancelled", last_error=reason, lease_owner=None, lease_expires_at=None)
            )

    def record_many(self, attempts: Sequence[tuple[Job, AttemptResult, datetime]]) -> None:
        """Record attempts, their effect on their deliveries and their facts in the orders' streams, in one transaction.

        Batched because a delivery is a handful of statements: recording whatever finished meanwhile in one
        transaction turns them into a handful per batch. An attempt whose lease was lost is skipped (another
        worker owns the delivery now).
        """
        now = self.clock.now()
        plans = [self._plan(job, result, started, now) for job, result, started in attempts]
        for plan in plans:
            DELIVERIES.labels(plan.outcome).inc()
            LATENCY.observe(plan.result.duration_ms / 1000)
        self._write(plans, now)

    def _plan(self, job: Job, result: AttemptResult, started: datetime, now: datetime) -> _Plan:
        """What an attempt does to its delivery: delivered, retried later, dead (410 or out of attempts)."""
        outcome = classify(result.status_code, result.error_kind)
        error = result.error_kind or (f"HTTP {result.status_code}" if result.status_code else None)
        plan = _Plan(job, result, started, outcome, state="pending", last_error=error)
        if outcome == "delivered":
            return replace(plan, state="delivered", delivered_at=now, last_error=None)
        if outcome == "gone":
            return replace(plan, state="dead", last_error="410 Gone: endpoint disabled")
        retry_after = parse_retry_after(result.retry_after, now) if outcome == "retry_after" else None
        delay = self.policy.next_delay(job.attempt - job.retry_base, self.rng, retry_after)
        if delay is None:
            return replace(plan, state="dead", last_error=f"gave up after {job.attempt} attempts: {error}")
        return replace(plan, next_attempt_at=now + timedelta(seconds=delay))

    def _write(self, plans: list[_Plan], now: datetime) -> None:
        """Write the plans in one transaction; retry what a race explains, and isolate what one attempt broke."""
        written: list[_Plan] | None = None
        for _ in range(5):
            try:
                written = self._write_once(plans, now)
                break
            except ConcurrencyError:
                continue  # an order changed under us (e.g. acknowledged just now): record against the new state
            except IntegrityError:
                if len(plans) == 1:
                    job = plans[0].job
                    log.warning("attempt %s of %s was already recorded by another worker", job.attempt, job.id)
                    return
                break  # find the one another worker recorded; record the rest
            except DBAPIError as exc:
                if retryable(exc):
                    continue  # a deadlock or serialisation failure: the other transaction went through
                if len(plans) == 1:
                    raise
                log.exception("recording %d attempts together failed; recording them one by one", len(plans))
                break
        if written is None:
            if len(plans) == 1:
                job = plans[0].job
                log.error("attempt %s of %s not recorded: the order kept changing", job.attempt, job.id)
                return  # the lease expires and the attempt is made again
            # One attempt must not cost the others theirs: each on its own, so only the culprit is left over.
            for plan in plans:
                try:
                    self._write([plan], now)
                except Exception:
                    log.exception("attempt %s of %s not recorded", plan.job.attempt, plan.job.id)
            return
        for plan in written:
            if plan.outcome == "gone":
                DISABLED.inc()
                log.error("ALERT: platform %s webhook answered 410 Gone; endpoint disabled", plan.job.platform_id)
            elif plan.state == "dead":
                DEAD.inc()
                log.error("ALERT: delivery %s dead-lettered after %s attempts", plan.job.id, plan.job.attempt)
        if written:
            self.orders.after_commit()

    def _write_once(self, plans: list[_Plan], now: datetime) -> list[_Plan]:
        """One transaction: the deliveries, the attempt rows, the orders' facts. Returns the plans written."""
        with self.db.transaction() as conn:
            # Settled only where this worker still holds the lease: another may own the delivery by now.
            owned = bulk_update(
                conn,
                deliveries,
                "id",
                [p.delivery_row() for p in sorted(plans, key=lambda p: p.job.id)],  # one lock order for all
                match={"lease_owner": self.worker_id},
                keep_if_null=("next_attempt_at", "delivered_at"),
            )
            mine = [p for p in plans if p.job.id in owned]
            for plan in plans:
                if plan.job.id not in owned:
                    log.warning("lease on %s lost before attempt %s was recorded", plan.job.id, plan.job.attempt)
            if not mine:
                return []
            bulk_insert(conn, delivery_attempts, [p.attempt_row(self.worker_id) for p in mine])
            commands = [(p.job.order_id, c, self._meta(p.job)) for p in mine for c in self._order_commands(p)]
            for (order_id, command, _), outcome in zip(commands, self.orders.record_many(conn, commands), strict=True):
                if isinstance(outcome, DomainError):
                    # e.g. already notified through the inbox, or the order was withdrawn meanwhile: the attempt
                    # is still in the delivery log; the order's own history has nothing to add.
                    log.info("order %s: %s not recorded: %s", order_id, type(command).__name__, outcome.reason)
            for platform_id in sorted({p.job.platform_id for p in mine if p.outcome == "gone"}):
                registry.disable_webhook(conn, platform_id, "410 Gone from the webhook endpoint", now)
        return mine

    def _meta(self, job: Job) -> dict[str, Any]:
        return {"actor": f"notifier:{self.worker_id}", "role": "system", "delivery_id": job.id}

    @staticmethod
    def _order_commands(plan: _Plan) -> list[Command]:
        """The facts an attempt adds to its order: delivered (first 2xx of the order's push), or a failed attempt."""
        job, result = plan.job, plan.result
        if plan.outcome == "delivered":
            return (
                [RecordDelivery(delivery_id=job.id, attempt=job.attempt)] if job.webhook_type == "order.issued" else []
            )
        commands: list[Command] = [
            RecordDeliveryFailure(
                delivery_id=job.id,
                webhook_type=job.webhook_type,
                attempt=job.attempt,
                error_kind=result.error_kind or "http_status",
                duration_ms=float(result.duration_ms),
                status_code=result.status_code,
                next_attempt_at=plan.next_attempt_at,
            )
        ]
        if plan.state == "dead" and plan.outcome != "gone" and job.webhook_type == "order.issued":
            reason = f"webhook delivery {job.id} failed after {job.attempt} attempts"
            commands.append(Escalate(level=DEAD_LETTER_ESCALATION_LEVEL, reason=reason))
        return commands


@dataclass(frozen=True)
class _Plan:
    """One finished attempt and what it does to its delivery row."""

    job: Job
    result: AttemptResult
    started: datetime
    outcome: str
    state: str
    last_error: str | None
    next_attempt_at: datetime | None = None  # None: unchanged
    delivered_at: datetime | None = None

    def delivery_row(self) -> dict[str, Any]:
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
