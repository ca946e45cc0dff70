"""Every kind of background process serves its own /metrics on TAKEDOWN_METRICS_PORT, behind the metrics key: the
real `takedown` command started as an OS process against a database, scraped over HTTP on 127.0.0.1, each showing
the figures it moves (services/metrics/figures.py); the notifier's supervisor gives each child its own port."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.bootstrap import Container, bootstrap
from services.metrics.figures import FIGURES
from tests.builders import service_settings
from tests.conftest import fresh_sqlite_url
from tests.notifier.fleet import TrackingReceiver, issue_orders, register_platforms, wait_for_delivered
from tests.notifier.receiver import unused_port
from tests.processes import ROOT, TAKEDOWN, process_env

KEY = "metrics-test-key"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Process:
    """One `takedown ...` OS process with its metrics port; its output goes to a file shown when it fails."""

    def __init__(self, args: list[str], db_url: str, tmp: Path, port: int, **env: str) -> None:
        self.port = port
        self.log_path = tmp / f"{args[0]}-{port}.log"
        environment = process_env(
            db_url,
            f"{args[0]}-{port}",
            {
                "TAKEDOWN_WRITER_KEY_FILE": os.environ["TAKEDOWN_WRITER_KEY_FILE"],  # the test's own (conftest)
                "TAKEDOWN_LEDGER_KEY_FILE": str(tmp / "ledger.key"),
                "TAKEDOWN_METRICS_PORT": str(port),
                "TAKEDOWN_METRICS_KEY": KEY,
                **env,
            },
        )
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(TAKEDOWN), *args], cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def scrape(self, port: int | None = None, token: str | None = KEY) -> httpx.Response:
        """GET /metrics once the port answers (the process binds it after start-up), failing if the process died."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()}"
            try:
                return httpx.get(f"http://127.0.0.1:{port or self.port}/metrics", headers=headers, timeout=5)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no metrics on port {port or self.port}:\n{self.log()}") from None
                time.sleep(0.05)

    def samples(self, port: int | None = None) -> Samples:
        """Every sample of one authorised scrape, by (name, labels)."""
        answer = self.scrape(port)
        assert answer.status_code == 200, answer.text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples
        }

    def until(self, condition: Callable[[Samples], bool], port: int | None = None, timeout: float = 15) -> Samples:
        """Scrape until the figures satisfy `condition`; the last scrape is in the failure."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.samples(port)
            if condition(found):
                return found
            if time.monotonic() > deadline:
                shown = {k: v for k, v in found.items() if k[0].startswith("takedown_")}
                raise AssertionError(f"figures never as expected: {shown}\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM and wait; the port is released."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def sample(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def total(found: Samples, name: str) -> float:
    return sum(v for (n, _), v in found.items() if n == name)


def families_moved(found: Samples) -> set[str]:
    """The takedown_ families that have a sample (a labelled family shows none until a child is written)."""
    names = set()
    for (name, _), _value in found.items():
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return {n for n in names if n.startswith("takedown_")}


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    return fresh_sqlite_url(sqlite_template, tmp_path)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start processes for the test; every one is stopped at its end, cleanly (exit 0)."""
    running: list[Process] = []

    def start(args: list[str], db_url: str, **env: str) -> Process:
        running.append(Process(args, db_url, tmp_path, unused_port(), **env))
        return running[-1]

    yield start
    codes = {p.log_path.name: p.stop() for p in running}
    assert set(codes.values()) <= {0}, codes


def world(db_url: str, **settings: object) -> Container:
    return bootstrap(service_settings(db_url).model_copy(update=settings))


def test_the_sequencer_serves_the_numbering_lag_only_with_the_key(
    started: Callable[..., Process], sqlite_url: str
) -> None:
    sequencer = started(["sequencer"], sqlite_url)
    found = sequencer.samples()
    assert sample(found, "takedown_unnumbered_events") == 0.0
    assert sample(found, "takedown_numbering_lag_seconds") == 0.0
    refused = sequencer.scrape(token=None)
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 401 and "takedown_" not in refused.text
    assert sequencer.scrape(token="wrong").status_code == 401
    elsewhere = httpx.get(f"http://127.0.0.1:{sequencer.port}/other", timeout=5)
    assert elsewhere.status_code == 404


def test_the_scheduler_serves_the_sla_status_gauges_and_its_escalations(
    started: Callable[..., Process], sqlite_url: str
) -> None:
    # Not notified within ~0.4 s of issue: the first escalation falls due almost at once.
    fast = {"sla_notice_hours": 0.0001}
    container = world(sqlite_url, **fast)
    try:
        with TrackingReceiver() as receiver:
            platform = next(iter(register_platforms(container, receiver, 1)))
            issue_orders(container, [platform], 3, "SCHED")
        container.projections.run_once()  # no projections process here: the SLA rows come from this one
    finally:
        container.close()
    scheduler = started(["scheduler"], sqlite_url, TAKEDOWN_SLA_NOTICE_HOURS="0.0001", TAKEDOWN_SWEEP_INTERVAL_S="0.2")
    found = scheduler.until(lambda f: total(f, "takedown_escalations_total") == 3)
    assert sample(found, "takedown_sla_orders", status="awaiting_delivery") == 3.0
    assert sum(v for (n, _), v in found.items() if n == "takedown_sla_orders") == 3.0
    assert families_moved(found) >= FIGURES["scheduler"]


def test_the_projections_process_serves_its_lag(started: Callable[..., Process], sqlite_url: str) -> None:
    container = world(sqlite_url)
    try:
        with TrackingReceiver() as receiver:
            platform = next(iter(register_platforms(container, receiver, 1)))
            issue_orders(container, [platform], 2, "PROJ")
        with container.db.read() as conn:
            head = container.store.head(conn)
    finally:
        container.close()
    assert head > 0
    projections = started(["projections", "run"], sqlite_url)
    # Applied by the process, so its figures read 0 behind (a lagging one is in test_readings.py).
    found = projections.until(lambda f: sample(f, "takedown_projection_lag_events", projection="sla") == 0.0)
    assert sample(found, "takedown_projection_lag_seconds", projection="sla") == 0.0
    assert families_moved(found) >= FIGURES["projections"]


def test_the_ledger_feeder_serves_its_lag_and_the_checkpoints_age(
    started: Callable[..., Process], sqlite_url: str
) -> None:
    container = world(sqlite_url)
    try:
        with TrackingReceiver() as receiver:
            platform = next(iter(register_platforms(container, receiver, 1)))
            issue_orders(container, [platform], 2, "LEDGER")
    finally:
        container.close()
    feeder = started(["ledger", "feeder"], sqlite_url, TAKEDOWN_LEDGER_CHECKPOINT_INTERVAL_S="0.2")

    def fed_and_signed(found: Samples) -> bool:
        age = sample(found, "takedown_ledger_checkpoint_age_seconds")
        return sample(found, "takedown_ledger_lag_events") == 0.0 and age is not None and not math.isnan(age)

    found = feeder.until(fed_and_signed)
    assert sample(found, "takedown_ledger_lag_seconds") == 0.0
    assert sample(found, "takedown_ledger_blocked") == 0.0
    # Nothing refused, and no witness configured (its gauges have a child per witness).
    quiet = {
        "takedown_ledger_refused",
        "takedown_ledger_witness_cosigned_size",
        "takedown_ledger_witness_cosignature_age_seconds",
    }
    assert families_moved(found) >= FIGURES["ledger feeder"] - quiet


def test_the_notifier_serves_its_deliveries_after_one_push_to_a_real_receiver(
    started: Callable[..., Process], sqlite_url: str
) -> None:
    container = world(sqlite_url)
    try:
        with TrackingReceiver() as receiver:
            platform = next(iter(register_platforms(container, receiver, 1)))
            notifier = started(["notifier"], sqlite_url)
            assert total(notifier.samples(), "takedown_webhook_attempts_total") == 0
            issue_orders(container, [platform], 1, "NOTIFY")
            wait_for_delivered(container, 1, [], timeout=20)
            found = notifier.until(lambda f: sample(f, "takedown_webhook_attempts_total", outcome="delivered") == 1)
            assert len(receiver.exchanges()) == 1
    finally:
        container.close()
    assert sample(found, "takedown_webhook_attempt_seconds_count") == 1.0
    assert sample(found, "takedown_webhook_dead_letters_total") == 0.0
    assert families_moved(found) >= FIGURES["notifier"]


@pytest.mark.postgres
def test_each_notifier_child_serves_its_own_figures_on_its_own_port(
    started: Callable[..., Process], tmp_path: Path, pg_template: str
) -> None:
    from tests.conftest import drop_pg, fresh_pg_url

    url = fresh_pg_url(pg_template)
    container = world(url)
    try:
        with TrackingReceiver() as receiver:
            platforms = list(register_platforms(container, receiver, 2))
            supervisor = started(["notifier"], url, TAKEDOWN_NOTIFIER_PROCESSES="2")
            issue_orders(container, platforms, 8, "FLEET")
            wait_for_delivered(container, 8, [], timeout=30)
            ports = (supervisor.port, supervisor.port + 1)

            def delivered(port: int) -> float:
                return sample(supervisor.samples(port), "takedown_webhook_attempts_total", outcome="delivered") or 0

            deadline = time.monotonic() + 15
            while sum(map(delivered, ports)) < 8 and time.monotonic() < deadline:
                time.sleep(0.1)
            counts = [delivered(port) for port in ports]
    finally:
        container.close()
        drop_pg(url)
    # Each child counts only what it delivered; together, every delivery once.
    assert sum(counts) == 8, counts
