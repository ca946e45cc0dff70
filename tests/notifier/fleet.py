"""Helpers for the multi-process notifier tests: notifier OS processes, and a receiver that times every exchange.

`NotifierProcess` runs the real `takedown notifier` command against a database (PostgreSQL), so the tests
exercise the shipped CLI, its settings from the environment and its SIGTERM handling.

`TrackingReceiver` is the scripted test receiver (real sockets on 127.0.0.1) with one difference: instead of a
script per path it answers by webhook-id (e.g. "fail the first attempt of these messages") and records, for every
request, when it arrived and when its response was written (or the exchange was cut), so a test can check that
no two requests of one webhook message were ever in flight at the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from services.bootstrap import Container, bootstrap
from services.http.schemas.orders import IssueOrderIn
from services.notifier.tables import deliveries
from shared.auth import Principal
from tests.builders import order_body, platform_fields, service_settings
from tests.processes import TakedownProcess

from .receiver import Receiver, _head, _read_request

# ------------------------------------------------------------------------------------------------ processes


class NotifierProcess(TakedownProcess):
    """One `takedown notifier` OS process."""

    def __init__(self, db_url: str, name: str, log_dir: Path, **env: str) -> None:
        super().__init__(("notifier",), db_url, name, log_dir, **env)

    def owns(self, worker_id: str) -> bool:
        """Whether a worker id (`host:pid:object`) names this process."""
        return worker_id.split(":")[1] == str(self.pid)


def wait_until_claiming(admin_url: str, database: str, names: list[str], procs: list[NotifierProcess]) -> None:
    """Wait until every named notifier process has a connection to `database` (its loop is claiming)."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 20
    try:
        while True:
            with engine.connect() as conn:
                seen = set(
                    conn.execute(
                        text("SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = :db"),
                        {"db": database},
                    ).scalars()
                )
            if set(names) <= seen:
                return
            for p in procs:
                if p.proc.poll() is not None:
                    raise AssertionError(f"notifier {p.name} exited with {p.proc.returncode}:\n{p.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"notifiers {names} never connected (saw {seen})")
            time.sleep(0.1)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------------- receiver


@dataclass(frozen=True)
class Exchange:
    """One request as the tracking receiver handled it (monotonic times, comparable across processes on Linux)."""

    webhook_id: str
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float
    ended: float  # response fully written, or the moment the connection turned out to be gone
    status: int | None  # None: the client went away before the response could be written


class TrackingReceiver(Receiver):
    """Answers 200 after `delay` seconds, or 500 to the first request of a webhook-id `fail_first` selects."""

    def __init__(self, delay: float = 0.0, fail_first: Callable[[str], bool] = lambda _wid: False) -> None:
        super().__init__()
        self.delay = delay
        self.fail_first = fail_first
        self._exchanges: list[Exchange] = []
        self._in_flight: dict[int, tuple[str, float]] = {}
        self._seen: set[str] = set()
        self._track_lock = threading.Lock()

    def exchanges(self) -> list[Exchange]:
        with self._track_lock:
            return list(self._exchanges)

    def in_flight(self) -> list[tuple[str, float]]:
        """The (webhook-id, arrival) of requests that arrived and are not answered yet."""
        with self._track_lock:
            return list(self._in_flight.values())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        request = None
        status: int | None = None
        try:
            request = await _read_request(reader)
            if request is None:
                return
            wid = request.headers.get("webhook-id", "")
            with self._track_lock:
                first = wid not in self._seen
                self._seen.add(wid)
                self._in_flight[id(task)] = (wid, request.received_monotonic)
            answer = 500 if first and self.fail_first(wid) else 200
            if self.delay:
                await asyncio.sleep(self.delay)
            if reader.at_eof():
                return  # the client is gone (e.g. its process was killed): nothing to answer
            writer.write(_head(answer, {"content-length": "0"}))
            await writer.drain()
            status = answer
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            ended = time.monotonic()
            if request is not None:
                with self._track_lock:
                    self._in_flight.pop(id(task), None)
                    self._exchanges.append(
                        Exchange(
                            request.headers.get("webhook-id", ""),
                            request.path,
                            request.headers,
                            request.body,
                            request.received_monotonic,
                            ended,
                            status,
                        )
                    )
            self._tasks.discard(task)
            writer.transport.abort()


def overlapping(exchanges: list[Exchange]) -> list[tuple[Exchange, Exchange]]:
    """Pairs of exchanges of one webhook-id whose [arrived, ended] intervals overlap."""
    by_id: dict[str, list[Exchange]] = {}
    for e in exchanges:
        by_id.setdefault(e.webhook_id, []).append(e)
    found = []
    for group in by_id.values():
        group.sort(key=lambda e: e.arrived)
        found += [(a, b) for a, b in itertools.pairwise(group) if b.arrived < a.ended]
    return found


# ---------------------------------------------------------------------------------------------- test world


ISSUER = Principal(key_id="fleet-test", role="issuer", authority_id="mci", authority_name="Ministry")


def world(db_url: str) -> Container:
    """A container on `db_url` for the test process itself (issues orders; its own notifier never runs)."""
    return bootstrap(service_settings(db_url))


def register_platforms(container: Container, receiver: Receiver, count: int) -> dict[str, str]:
    """Register `count` platforms whose webhooks point at `receiver` (/p0, /p1, ...); returns id → secret."""
    secrets: dict[str, str] = {}
    now = container.clock.now()
    with container.db.transaction() as conn:
        for n in range(count):
            row, secret = container.registry.register_in(
                conn, platform_fields(f"P{n}", webhook_url=receiver.url(f"/p{n}")), now
            )
            secrets[row.id] = secret
    return secrets


def issue_orders(container: Container, platform_ids: list[str], count: int, prefix: str) -> list[str]:
    """Issue `count` orders round-robin over the platforms through the OrderService; returns their ids."""
    ids = []
    for n in range(count):
        body = IssueOrderIn.model_validate(
            order_body(platform_ids[n % len(platform_ids)], issuer_reference=f"{prefix}-{n}")
        ).to_order("mci", "Ministry")
        document, created = container.orders.issue(ISSUER, body, None)
        assert created
        ids.append(document["id"])
    return ids


def wait_for_delivered(container: Container, count: int, procs: list[NotifierProcess], timeout: float) -> None:
    """Wait until `count` deliveries are delivered, failing early if a notifier process died."""
    deadline = time.monotonic() + timeout
    while True:
        with container.db.read() as conn:
            states = dict(conn.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all())
        if states.get("delivered", 0) >= count:
            return
        for p in procs:
            assert p.proc.poll() is None, f"{p.name} died ({p.proc.returncode}):\n{p.log()}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in procs)
            raise AssertionError(f"not all delivered within {timeout} s: {states}\n{logs}")
        time.sleep(0.2)
