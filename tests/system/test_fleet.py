"""The whole service as separate processes on one PostgreSQL, under load, with one API and one notifier killed.

nginx with the shipped ops/nginx/takedown.conf in front of two `takedown api`, two `takedown notifier`, two `takedown scheduler`, the sequencer, the projection runner and the
ledger feeder, each its own OS process configured by environment only, as an operator runs them. Issuers post
orders from several threads, each with its own Idempotency-Key, retrying after a dropped connection; a platform
simulator answers the webhooks (some with 500, 429 or a timeout first), acknowledges and removes, contests, or
ignores. Midway one API process and one notifier are SIGKILLed and started again. The SLA is shortened to seconds so
that ignored and contested orders escalate while two schedulers race.

Afterwards: every order answered 201 exists, with its events, once per issuer reference; every delivery was
delivered; positions are gap-free; no escalation level was recorded twice for an order; the projection equals a
rebuild; `takedown ledger verify` passes. The short form (the default, in `.ci/run`) issues SYSTEM_ORDERS=150
orders; the long form is `TAKEDOWN_SYSTEM_ORDERS=3000 pytest tests/system` (figures in the README).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, func, select

from bench.proxy import Proxy, start_nginx, stop_nginx
from services.bootstrap import Container, bootstrap
from services.ledger import tree
from services.notifier.tables import deliveries
from services.orders.sla_clock import STILL_OPEN_LONG
from services.sla.projection import NAME as SLA
from services.sla.tables import sla_answer_histogram, sla_counts, sla_orders
from shared.auth import create_key
from shared.eventstore.tables import event_positions, events
from shared.projections import projection_positions, rebuild
from tests.builders import order_body, platform_fields, service_settings
from tests.conftest import drop_pg, fresh_pg_url
from tests.notifier.receiver import unused_port
from tests.processes import TAKEDOWN, TakedownProcess, process_env

from .platform import PlatformSimulator, plan

pytestmark = pytest.mark.postgres

ORDERS = int(os.environ.get("TAKEDOWN_SYSTEM_ORDERS", "150"))
# The waits grow with the load: the short form's bounds, times how many more orders the long form sends.
SCALE = max(1.0, ORDERS / 150)
ISSUERS = 8
PLATFORMS = 3
WEBHOOK_TIMEOUT_S = 2.0
# Seconds instead of hours, so that ignored and contested orders escalate during the test: the deadline 10.8 s
# after notice, levels 3 and 4 1.8 s and 3.6 s after it, the issuer's review of a contest due in 10.8 s.
POLICY: dict[str, Any] = {"sla_hours": 0.003, "sla_still_open_hours": [0.0005, 0.001], "sla_review_hours": 0.003}


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    url = fresh_pg_url(pg_template)
    yield url
    drop_pg(url)


class Fleet:
    """Every process of the service, started from one environment."""

    def __init__(self, db_url: str, log_dir: Path, env: dict[str, str]) -> None:
        self.db_url, self.log_dir, self.env = db_url, log_dir, env
        self.processes: dict[str, TakedownProcess] = {}
        self.proxy: Proxy | None = None
        self.api_ports = [unused_port(), unused_port()]

    def start(self, name: str, *args: str) -> TakedownProcess:
        self.processes[name] = TakedownProcess(args, self.db_url, name, self.log_dir, **self.env)
        return self.processes[name]

    def start_all(self) -> None:
        for n, port in enumerate(self.api_ports):
            self.start(f"api-{n}", "api", "--host", "127.0.0.1", "--port", str(port))
        self.start("sequencer", "sequencer")
        for n in range(2):
            self.start(f"notifier-{n}", "notifier")
            self.start(f"scheduler-{n}", "scheduler")
        self.start("projections", "projections", "run")
        self.start("feeder", "ledger", "feeder")
        for base in self.direct:
            self.wait_ready(base)
        self.proxy = start_nginx(self.api_ports)

    def wait_ready(self, base: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{base} never became ready\n{self.logs()}")

    @property
    def direct(self) -> list[str]:
        """Each API process's own address."""
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def fronts(self) -> list[str]:
        """Where clients go: the proxy (the shipped ops/nginx/takedown.conf) in front of both."""
        assert self.proxy is not None, "the fleet is not started"
        return [self.proxy.base]

    def check_alive(self) -> None:
        dead = [p for p in self.processes.values() if not p.alive()]
        assert not dead, f"{[p.name for p in dead]} exited\n{self.logs()}"

    def logs(self, tail: int = 1500) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-tail:]}" for p in self.processes.values())

    def stop(self) -> dict[str, int]:
        if self.proxy is not None:
            stop_nginx(self.proxy)
            self.proxy = None
        return {name: p.terminate() for name, p in self.processes.items()}


class Issuer(threading.Thread):
    """Posts its share of the orders, each with its Idempotency-Key, retrying a dropped request on the next front."""

    def __init__(self, n: int, fronts: list[str], key: str, platform_ids: list[str], started: threading.Event) -> None:
        super().__init__(name=f"issuer-{n}", daemon=True)
        self.n, self.fronts, self.key, self.platform_ids, self.started = n, fronts, key, platform_ids, started
        self.created: dict[str, str] = {}  # issuer reference -> order id, from the 201s
        self.repeats = 0  # requests sent again after a dropped connection or a 5xx
        self.errors: list[str] = []
        self.sent = 0

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for k in range(self.n, ORDERS, ISSUERS):
                    self.started.set()
                    self._issue(client, k)
                    self.sent += 1
        except Exception as exc:  # noqa: BLE001 - collected and asserted by the test
            self.errors.append(repr(exc))

    def _issue(self, client: httpx.Client, k: int) -> None:
        reference = f"SYS-{k}"
        body = order_body(self.platform_ids[k % len(self.platform_ids)], issuer_reference=reference)
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": f"idem-{reference}"}
        for attempt in range(50):
            front = self.fronts[(k + attempt) % len(self.fronts)]
            try:
                response = client.post(f"{front}/v1/orders", json=body, headers=headers)
            except httpx.TransportError:
                self.repeats += 1
                time.sleep(0.1)
                continue
            if response.status_code >= 500:
                self.repeats += 1
                time.sleep(0.1)
                continue
            assert response.status_code in (200, 201), f"{reference}: {response.status_code} {response.text}"
            if response.status_code == 201:
                self.created[reference] = response.json()["id"]
            else:  # a repeat: the first try went through before its connection dropped
                self.created.setdefault(reference, response.json()["id"])
            return
        raise AssertionError(f"{reference}: no API answered")


def _snapshot(container: Container, table: Table) -> list[dict[str, Any]]:
    with container.db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(table))]
    return sorted(rows, key=repr)


def _wait(what: str, done: Any, fleet: Fleet, timeout: float, state: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not done():
        fleet.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s ({state()})\n{fleet.logs()}")
        time.sleep(0.25)


def test_the_fleet_keeps_every_guarantee_through_a_crash(pg_url: str, tmp_path: Path) -> None:
    container = bootstrap(service_settings(pg_url).model_copy(update=POLICY))  # the rebuild judges alike
    env = {
        "TAKEDOWN_WRITER_KEY_FILE": str(tmp_path / "writer.key"),
        "TAKEDOWN_LEDGER_KEY_FILE": str(tmp_path / "ledger.key"),
        "TAKEDOWN_LEDGER_CHECKPOINT_INTERVAL_S": "1",
        "TAKEDOWN_WEBHOOK_TIMEOUT_S": str(WEBHOOK_TIMEOUT_S),
        "TAKEDOWN_WEBHOOK_LEASE_MARGIN_S": "1",
        **{f"TAKEDOWN_{k.upper()}": json.dumps(v) for k, v in POLICY.items()},
        "TAKEDOWN_SWEEP_INTERVAL_S": "0.5",
    }
    now = container.clock.now()
    fleet = Fleet(pg_url, tmp_path, env)
    simulator = PlatformSimulator([], {}, WEBHOOK_TIMEOUT_S)
    simulator.start()  # before the platforms are registered: their webhook URLs name its port
    with container.db.transaction() as conn:
        platform_ids = []
        for n in range(PLATFORMS):
            row, _ = container.registry.register_in(
                conn, platform_fields(f"P{n}", webhook_url=simulator.url(f"/p{n}")), now
            )
            platform_ids.append(row.id)
            simulator.keys[f"/p{n}"] = create_key(conn, "platform", now, platform_id=row.id)[0]
        issuer_key = create_key(conn, "issuer", now, authority_id="mci", authority_name="Ministry")[0]
    try:
        fleet.start_all()
        simulator.fronts = fleet.fronts
        started = threading.Event()
        load_started = time.monotonic()
        issuers = [Issuer(n, fleet.fronts, issuer_key, platform_ids, started) for n in range(ISSUERS)]
        for issuer in issuers:
            issuer.start()

        # Midway: SIGKILL one API process and one notifier, then start them again.
        _wait("a third of the orders sent", lambda: sum(i.sent for i in issuers) >= ORDERS // 3, fleet, 120)
        fleet.processes["api-0"].kill()
        fleet.processes["notifier-0"].kill()
        time.sleep(0.5)
        fleet.processes["api-0"].restart()
        fleet.processes["notifier-0"].restart()
        fleet.wait_ready(fleet.direct[0])
        # A client that sends an order again with its Idempotency-Key (its connection dropped, say) gets the
        # one order, from either process, the restarted one too.
        sent = next(i for i in issuers if i.created)
        reference, order_id = next(iter(dict(sent.created).items()))
        number = int(reference.rsplit("-", 1)[1])
        for front in [*fleet.direct, *fleet.fronts]:
            again = httpx.post(
                f"{front}/v1/orders",
                json=order_body(platform_ids[number % PLATFORMS], issuer_reference=reference),
                headers={"Authorization": f"Bearer {issuer_key}", "Idempotency-Key": f"idem-{reference}"},
                timeout=30,
            )
            assert (again.status_code, again.json()["id"]) == (200, order_id), again.text

        for issuer in issuers:
            issuer.join(600)
        issued_in = time.monotonic() - load_started
        assert not [e for i in issuers for e in i.errors], [e for i in issuers for e in i.errors]
        created = {ref: oid for i in issuers for ref, oid in i.created.items()}
        assert len(created) == ORDERS

        expected = sum(1 for ref in created if plan(ref)[1] != "ignore")

        def progress() -> str:
            with container.db.read() as conn:
                states = dict(conn.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all())
            return f"deliveries {states}, platform {simulator.counts()} of {expected}, {simulator.answers}, {simulator.trying}, {simulator.errors[:3]}"

        def settled() -> bool:
            with container.db.read() as conn:
                states = set(conn.execute(select(deliveries.c.state).distinct()).scalars())
            acted = simulator.counts()
            return states == {"delivered"} and acted.get("pending", 0) == 0 and sum(acted.values()) == expected

        _wait("every delivery delivered and every answer given", settled, fleet, 90 * SCALE, progress)
        assert not simulator.errors, simulator.errors

        # The ignored orders pass their deadline: both schedulers escalate them, each level once.
        ignored = {oid for ref, oid in created.items() if plan(ref)[1] == "ignore"}

        def escalated() -> bool:
            with container.db.read() as conn:
                rows = conn.execute(
                    select(events.c.stream_id, events.c.data).where(events.c.type == "order.escalated")
                ).all()
            top = {r.stream_id for r in rows if int(r.data["level"]) == STILL_OPEN_LONG}
            return ignored <= top

        _wait("the ignored orders escalated to level 4", escalated, fleet, 120 * SCALE, progress)
        _wait("the deliveries of the escalations delivered", settled, fleet, 60 * SCALE, progress)
        container.sequencer.catch_up()

        # The feeder and the projection runner catch up with the head, then stop.
        def caught_up() -> bool:
            with container.db.read() as conn:
                head = conn.execute(select(func.count()).select_from(events)).scalar_one()
                fed = tree.head(conn).size
                projected = conn.execute(
                    select(projection_positions.c.position).where(projection_positions.c.name == SLA)
                ).scalar_one_or_none()
            return fed >= head and (projected or 0) >= head

        _wait("the ledger and the projection caught up", caught_up, fleet, 60 * SCALE)
        codes = fleet.stop()
        # Every process drained and exited cleanly; uvicorn, once its graceful shutdown is done, raises the
        # SIGTERM it caught again, so an API process ends by that signal.
        assert all(code == 0 or (name.startswith("api") and code == -15) for name, code in codes.items()), codes
        assert all("Finished server process" in fleet.processes[n].log() for n in codes if n.startswith("api"))
    finally:
        fleet.stop()
        simulator.stop()

    # Nothing answered 201 is lost, and a retried Idempotency-Key made one order, never two.
    with container.db.read() as conn:
        issued = conn.execute(select(events.c.stream_id, events.c.data).where(events.c.type == "order.issued")).all()
        positions = (
            conn.execute(select(event_positions.c.position).order_by(event_positions.c.position)).scalars().all()
        )
        stored = conn.execute(select(func.count()).select_from(events)).scalar_one()
        escalations = conn.execute(
            select(events.c.stream_id, events.c.data).where(events.c.type == "order.escalated")
        ).all()
        claims = conn.execute(
            select(events.c.stream_id, events.c.type, events.c.data).where(
                events.c.type.in_(["order.delivered", "order.item_outcome_reported"])
            )
        ).all()
        delivered = (
            conn.execute(select(deliveries.c.order_id).where(deliveries.c.webhook_type == "order.issued"))
            .scalars()
            .all()
        )
    by_reference = Counter(str(r.data["issuer_reference"]) for r in issued)
    assert by_reference == Counter({ref: 1 for ref in created}), "one order per issuer reference"
    assert {r.stream_id for r in issued} == set(created.values()), "every order answered 201 exists"
    assert sorted(delivered) == sorted(created.values()), "every order delivered once"
    assert positions == list(range(1, stored + 1)), "every event numbered, positions gap-free"
    levels = Counter((r.stream_id, int(r.data["level"])) for r in escalations)
    assert levels and max(levels.values()) == 1, "no escalation level twice"

    # The platform removes at once and says so by its own clock: often before the notice the service recorded (the
    # webhook's answer), which is its claim and accepted (CLAIM_SKEW), never a 409.
    notified = {
        r.stream_id: datetime.fromisoformat(r.data["notified_at"]) for r in claims if r.type == "order.delivered"
    }
    actioned = [
        (r.stream_id, datetime.fromisoformat(r.data["actioned_at"])) for r in claims if r.type != "order.delivered"
    ]
    early = sum(1 for order_id, at in actioned if at < notified[order_id])
    assert early, "the simulator's claims were all after the recorded notice: the skew was not exercised"

    # The projection the runner kept equals a rebuild from the events.
    tables = (sla_orders, sla_counts, sla_answer_histogram)
    live = {t.name: _snapshot(container, t) for t in tables}
    rebuild(container.db, container.store, container.sla)
    rebuilt = {t.name: _snapshot(container, t) for t in tables}
    for name in ("sla_counts",):  # a counter that went to zero may stay
        live[name] = [r for r in live[name] if r["n"]]
        rebuilt[name] = [r for r in rebuilt[name] if r["n"]]
    assert rebuilt == live

    verify = subprocess.run(
        [str(TAKEDOWN), "ledger", "verify"],
        env=process_env(pg_url, "verify", env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The figures of a run (shown with -s; the README quotes the long form's).
    print(
        f"\nsystem: {ORDERS} orders in {issued_in:.1f} s through the proxy, {sum(i.repeats for i in issuers)} sent"
        f" again after a dropped connection or a 5xx, {len(delivered)} orders delivered, {len(positions)} events,"
        f" {len(escalations)} escalations, webhook answers {dict(simulator.answers)}, actions {simulator.counts()},"
        f" {early} outcomes claimed before the recorded notice"
    )
    container.close()
