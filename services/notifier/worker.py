"""The notifier's loop: claims due deliveries (`outbox`), signs and sends each one, hands the result to `recorder`.

Any number of notifier processes may run on one PostgreSQL: a claim is a row lease, and an attempt is recorded
only by the worker that still holds the lease, under a unique (delivery, attempt) row. A killed worker's leases
expire and another worker resumes its deliveries. One slow or dead platform cannot hold up the others: each
platform has a small concurrency cap, and a worker does not claim work for a platform whose slots are full; on
PostgreSQL the cap counts the live leases of every notifier process, so it holds across hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

import httpx
import structlog

from services.notifier import outbox
from services.notifier.outbox import Claimed
from services.notifier.policy import DEFAULT_POLICY, RetryPolicy
from services.notifier.recorder import EndpointGone, OrderFacts, Recorder
from services.notifier.sender import AttemptResult, send, transport
from services.registry import service as registry
from services.registry.kek import Keyring
from services.registry.service import WebhookEndpoint
from services.webhooks.safety import Resolver, resolve_host, vetted_address, vetted_literal
from services.webhooks.signing import webhook_headers
from shared.clock import Clock
from shared.db import Database

log = logging.getLogger("takedown.notifier")


@dataclass(frozen=True)
class Job(Claimed):
    """A claimed delivery with its platform's endpoint, read in the claim's transaction (None: not registered)."""

    endpoint: WebhookEndpoint | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class NotifierConfig:
    """Limits and timings of one notifier process."""

    timeout_s: float = 15.0
    per_platform: int = 4  # the platform's cap: across every notifier process on PostgreSQL
    per_process: int | None = None  # this process's share of it (default: all of it)
    total: int = 64
    poll_interval_s: float = 0.25
    lease_margin_s: float = 30.0
    allow_list: tuple[str, ...] = ()
    https_only: bool = False  # production: plain http endpoints are refused at delivery too
    # Endpoints that are not platforms of the registry, by destination id (the supervisor's webhook).
    extra_endpoints: Mapping[str, WebhookEndpoint] = field(default_factory=dict)


class Notifier:
    """A delivery worker; run `run()` in an event loop, `wake()` from any thread when new jobs exist."""

    def __init__(
        self,
        db: Database,
        order_facts: OrderFacts,
        clock: Clock,
        config: NotifierConfig | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        rng: random.Random | None = None,
        worker_id: str | None = None,
        resolver: Resolver = resolve_host,
        *,
        endpoint_gone: EndpointGone,
        keyring: Callable[[], Keyring],
    ) -> None:
        self.db, self.clock = db, clock
        self.keyring = keyring  # opens the platforms' sealed signing secrets
        self.config = config or NotifierConfig()
        self.resolver = resolver
        # Fits the 64-character lease_owner column whatever the host name's length.
        self.worker_id = (worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}:{id(self):x}")[:64]
        self.recorder = Recorder(db, order_facts, clock, self.worker_id, policy, rng, endpoint_gone=endpoint_gone)
        self._busy: Counter[str] = Counter()
        self._inflight: set[asyncio.Task[None]] = set()
        self._to_record: list[tuple[Job, AttemptResult, datetime, asyncio.Future[None]]] = []
        self._recording: asyncio.Task[None] | None = None
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
        wake = self._wake
        # Claims and the recorder use the loop's default threads; host-name lookups have threads of their own, so
        # that a DNS server that hangs cannot hold up recording (and so the leases) of every other platform.
        self._loop.set_default_executor(ThreadPoolExecutor(8, thread_name_prefix="notifier-db"))
        self._lookups = ThreadPoolExecutor(self.config.total, thread_name_prefix="notifier-dns")
        # One connection pool per platform, as large as the platform's slots: httpcore scans its whole pool on
        # every request and every response, so one shared 64-connection pool costs O(64) per request; and a
        # black-holed platform's connections then never sit in the pool the healthy platforms use.
        pools: dict[str, httpx.AsyncHTTPTransport] = {}

        def pool_for(platform_id: str) -> httpx.AsyncHTTPTransport:
            pool = pools.get(platform_id)
            if pool is None:
                pool = pools[platform_id] = transport(self.config.per_process or self.config.per_platform)
            return pool

        # A stop wakes the loop like new work does, so that the wait below has one event to wait for.
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: wake.set())
        try:
            while not stop.is_set():
                wake.clear()
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
                        free = self._slot(job.platform_id)
                        task = asyncio.create_task(self.attempt(pool_for(job.platform_id), job, on_sent=free))
                        self._inflight.add(task)
                        task.add_done_callback(self._done(free))
                if claimed == 0 or len(self._inflight) >= self.config.total:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.config.poll_interval_s):
                            await wake.wait()
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=self.config.timeout_s + 1)
        finally:
            stopper.cancel()
            if self._lookups is not None:
                self._lookups.shutdown(wait=False, cancel_futures=True)
            for pool in pools.values():
                await pool.aclose()

    def _slot(self, platform_id: str) -> Callable[[], None]:
        """What frees a platform's slot, once: when its request is answered, or when the attempt ends otherwise."""
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self._busy[platform_id] -= 1
                if self._wake is not None:
                    self._wake.set()  # a slot freed: there may be work for that platform

        return free

    def _done(self, free: Callable[[], None]) -> Callable[[asyncio.Task[None]], None]:
        def callback(task: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            free()

        return callback

    # ----------------------------------------------------------------------------------------- claims

    def claim(self, limit: int) -> list[Job]:
        """Lease up to `limit` due deliveries, skipping rows other workers hold and platforms at their cap."""
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.config.timeout_s + self.config.lease_margin_s)
        cap, share = self.config.per_platform, self.config.per_process or self.config.per_platform
        mine = self._busy
        with self.db.transaction() as conn:
            # PostgreSQL: the fleet's live leases (this process's among them), as the cap is the platform's,
            # whoever sends. SQLite has one notifier process: its own requests in flight are the whole count.
            busy = outbox.in_flight(conn, now) if conn.dialect.name == "postgresql" else mine
            full = [p for p in {*busy, *mine} if busy[p] >= cap or mine[p] >= share]
            claimed = outbox.claim(conn, self.worker_id, now, lease_until, limit, full)
            # Per-platform cap inside one claim batch too: hand back what exceeds it, in the same transaction
            # (on SQLite a second one would wait its turn behind every writer again).
            kept: list[Claimed] = []
            counts: Counter[str] = Counter()
            for c in claimed:
                p = c.platform_id
                if busy[p] + counts[p] < cap and mine[p] + counts[p] < share:
                    counts[p] += 1
                    kept.append(c)
            if len(kept) < len(claimed):
                taken = {c.id for c in kept}
                outbox.release(conn, self.worker_id, [c.id for c in claimed if c.id not in taken])
            # The kept jobs' endpoints, read here (a worker thread) instead of on the event loop per attempt.
            ids = {c.platform_id for c in kept}
            opened = registry.endpoints(conn, ids, self.keyring()) if ids else {}
            found = {**opened, **self.config.extra_endpoints}
        return [Job(**{f.name: getattr(c, f.name) for f in fields(c)}, endpoint=found.get(c.platform_id)) for c in kept]

    # ---------------------------------------------------------------------------------------- attempt

    async def attempt(
        self, pool: httpx.AsyncBaseTransport, job: Job, on_sent: Callable[[], None] | None = None
    ) -> None:
        """Make one attempt at a claimed delivery: vet its destination, sign, send, and record the result.

        `on_sent` is called once the request is over, before the result is recorded: the per-platform cap
        counts requests in flight, and a slot waiting for a commit would only slow the platform's queue.
        """
        # This task's own context: every line logged during the attempt names its delivery and request.
        structlog.contextvars.bind_contextvars(**job.log_fields())
        try:
            endpoint = job.endpoint
            if endpoint is None or not endpoint.enabled or not endpoint.url:
                reason = "no webhook endpoint" if endpoint is None or not endpoint.url else "endpoint disabled"
                await asyncio.to_thread(self._cancel, job, f"{reason}: the order waits in the platform's inbox")
                log.info("delivery cancelled: %s", reason)
                return
            address, why = await self._vetted(endpoint.url)
            now = self.clock.now()
            if address is None:
                result = AttemptResult(None, "refused_destination", 0, why, None)
            else:
                headers = webhook_headers(endpoint.signing_secrets(now), job.id, int(now.timestamp()), job.body)
                # Connect to the address just checked, so a second DNS answer cannot point the request elsewhere.
                result = await send(pool, endpoint.url, headers, job.body, self.config.timeout_s, address)
            if on_sent is not None:
                on_sent()
            await self._recorded(job, result, now)
        except Exception:
            log.exception("attempt failed unexpectedly")

    async def _vetted(self, url: str) -> tuple[str | None, str]:
        """The address to connect to (None: refused, with why), checked against the allow-list."""
        literal = vetted_literal(url, self.config.allow_list, self.config.https_only)
        if literal is not None:
            return literal  # an IP address: nothing to look up, the answer never changes
        try:
            # A slow resolver must not outlive the lease (the attempt would then be sent twice).
            async with asyncio.timeout(self.config.timeout_s):
                return await asyncio.get_running_loop().run_in_executor(
                    self._lookups,
                    functools.partial(
                        vetted_address,
                        url,
                        self.config.allow_list,
                        resolver=self.resolver,
                        https_only=self.config.https_only,
                    ),
                )
        except TimeoutError:
            return None, "resolving the webhook host timed out"

    def _cancel(self, job: Job, reason: str) -> None:
        with self.db.transaction() as conn:
            outbox.cancel(conn, self.worker_id, job.id, reason)

    # -------------------------------------------------------------------------------------- recording

    async def _recorded(self, job: Job, result: AttemptResult, started: datetime) -> None:
        """Queue the attempt for the recorder and wait until it is committed (the lease is held until then)."""
        done = asyncio.get_running_loop().create_future()
        self._to_record.append((job, result, started, done))
        if self._recording is None or self._recording.done():
            # A fresh context: the recorder's batch is many attempts, not the one that happened to start it.
            self._recording = asyncio.create_task(self._record_queued(), context=contextvars.Context())
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

    def record_many(self, attempts: Sequence[tuple[Claimed, AttemptResult, datetime]]) -> None:
        """Record finished attempts in one transaction (see `Recorder.record_many`)."""
        self.recorder.record_many(attempts)
