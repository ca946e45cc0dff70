"""`takedown run --demo` seeds sample orders through the real commands: the dashboard, the report and the ledger
accept them, a second start seeds nothing, and the running demo serves non-zero figures at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from services import demo
from services.bootstrap import Container, bootstrap
from services.cli import _demo
from services.http.app import create_app
from services.notifier.outbox import SUPERVISOR
from services.orders import views
from services.sla import queries
from services.transparency.service import make_report
from services.webhooks.signing import generate_secret, webhook_headers
from shared.auth import Principal
from shared.clock import FrozenClock
from shared.eventstore import RecordedEvent
from tests.builders import platform_fields, service_settings
from tests.conftest import drop_pg, fresh_pg_url
from tests.notifier.receiver import unused_port

# A Friday in March: the finished month before it (February) holds about half of the sample history.
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
AUDITOR = Principal(key_id="test-auditor", role="auditor")


@pytest.fixture
def container(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Container]:
    monkeypatch.chdir(tmp_path)  # the demo keys file of a PostgreSQL demo lands in the working directory
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp_path / "ledger.key"))
    c = bootstrap(service_settings(db_url), clock=FrozenClock(NOW))
    yield c
    c.close()


def _caught_up(c: Container) -> None:
    """Positions given, the SLA projection fed, the sweep run once at the present (what `run` does on start)."""
    c.sequencer.catch_up()
    while c.projections.run_once():
        pass
    c.sweep.run_once()
    c.sequencer.catch_up()
    while c.projections.run_once():
        pass


def test_the_scenario_is_in_time_order_and_entirely_in_the_past_but_for_the_present_part() -> None:
    samples = demo.scenario()
    happenings = demo.timeline(samples, NOW)
    assert [at for at, _, _ in happenings] == sorted(at for at, _, _ in happenings)
    past = [at for at, index, _ in happenings if samples[index].issued_hours_ago > 0]
    assert max(past) < NOW and min(past) > demo.history_start(NOW)
    assert len({s.reference for s in samples}) == len(samples) >= 30


def test_the_seeded_orders_show_every_sla_status_the_dashboard_has(container: Container) -> None:
    info = _demo(container)
    assert info["seeded"] == len(demo.scenario())
    _caught_up(container)
    with container.read_db.read() as conn:
        [summary] = queries.summary(conn, AUDITOR, None)
    expected = Counter(s.shows for s in demo.scenario())
    assert {k: v for k, v in summary["counts"].items() if v} == dict(expected)
    for status in ("met", "met_late", "breached", "at_risk", "declined", "contested", "on_track"):
        assert summary["counts"][status] > 0, status
    assert summary["answered"] > 0 and summary["percent_met"] is not None

    documents = [dict(row.document) for row in _orders(container)]
    upheld = [d for d in documents if d["contested_at"] and d["upheld_at"]]
    assert len(upheld) == 1 and upheld[0]["status"] == "closed"
    assert {d["notified_via"] for d in documents if d.get("notified_via")} >= {"inbox", "email"}
    # The past had its sweeps: the late orders were escalated when their deadlines passed, not at the seeding.
    escalated = [e for e in _events(container) if e.type == "order.escalated"]
    assert escalated and all(e.recorded_at < NOW for e in escalated)


def test_the_transparency_report_of_the_finished_months_has_rows(container: Container) -> None:
    _demo(container)
    _caught_up(container)
    with container.read_db.read() as conn:
        report = make_report(conn, today=NOW.date(), start=None, end=None)
    published = [r for r in report.rows if not r.suppressed and r.figures is not None]
    assert published and report.total.orders > 0
    assert any(r.period == "2026-02" and r.figures and r.figures.orders >= 5 for r in published)
    assert report.total.sla_met > 0 and report.total.outcomes["removed"] > 0


def test_the_ledger_verifies_the_seeded_history_and_a_second_start_seeds_nothing(container: Container) -> None:
    _demo(container)
    with container.db.read() as conn:  # numbered before `run` starts a feeder that could checkpoint ahead of it
        assert container.store.unnumbered(conn)[0] == 0
    _caught_up(container)
    assert demo.seeding_refusal(container) == "the sample orders are there already"
    container.ledger.feed()
    container.ledger.checkpoint()
    report = container.ledger.verify()
    assert report.ok, report.problems
    with container.db.read() as conn:
        assert report.events_checked == container.store.head(conn)
    orders_before = len(_orders(container))

    again = _demo(container)
    assert again == {**again, "seeded": 0, "not_seeded": "the sample orders are there already"}
    assert again["platform_id"] == _demo(container)["platform_id"]
    assert len(_orders(container)) == orders_before
    assert container.ledger.blocked() is None


def test_events_stay_in_time_order_in_every_stream(container: Container) -> None:
    _demo(container)
    _caught_up(container)
    by_stream: dict[str, list[datetime]] = {}
    for e in _events(container):
        by_stream.setdefault(e.stream_id, []).append(e.recorded_at)
    assert all(times == sorted(times) for times in by_stream.values())
    with container.db.read() as conn:
        oldest = conn.execute(select(func.min(views.orders.c.issued_at))).scalar_one()
    assert NOW - oldest > timedelta(days=40)


def _orders(c: Container) -> list[Any]:
    with c.db.read() as conn:
        return list(conn.execute(select(views.orders)).all())


def _events(c: Container) -> list[RecordedEvent]:
    with c.db.read() as conn:
        return c.store.read_all(conn, limit=100_000)


def test_the_past_pushes_are_settled_in_the_past_and_the_webhook_is_set_for_the_present(container: Container) -> None:
    info = _demo(container, "http://127.0.0.1:9")
    platform_id = info["platform_id"]
    assert info["webhook"] == f"http://127.0.0.1:9/demo/receiver/{platform_id}"
    assert container.registry.get(platform_id).webhook_url == info["webhook"]
    pending = container.deliveries.find(state="pending", limit=1000)
    cancelled = container.deliveries.find(state="cancelled", limit=1000)
    # The platform had no webhook in the past: what the history queued waits in the inbox, without an attempt.
    assert cancelled and all(not d["attempt_log"] and d["created_at"] < NOW for d in cancelled)
    present = {row.id for row in _orders(container) if row.issued_at == NOW}
    assert len(present) == 2 and {d["order_id"] for d in pending} == present


def test_the_supervisors_copies_of_past_escalations_are_left_to_the_live_notifier(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAKEDOWN_LEDGER_KEY_FILE", str(tmp_path / "ledger.key"))
    supervised = service_settings(db_url).model_copy(
        update={
            "supervisor_webhook_url": "http://127.0.0.1:9/supervisor",
            "supervisor_webhook_secret": SecretStr(generate_secret()),
        }
    )
    c = bootstrap(supervised, clock=FrozenClock(NOW))
    try:
        _demo(c)
        copies = [d for d in c.deliveries.find(limit=1000) if d["platform_id"] == SUPERVISOR]
        assert copies and all(d["state"] == "pending" and not d["attempt_log"] for d in copies)
    finally:
        c.close()


def test_a_demo_without_loopback_in_the_allow_list_keeps_the_present_in_the_inbox(
    container: Container,
) -> None:
    container.settings = container.settings.model_copy(update={"webhook_allow_list": []})
    info = _demo(container, "http://127.0.0.1:9")
    assert "TAKEDOWN_WEBHOOK_ALLOW_LIST" in info["webhook"] and "loopback" in info["webhook"]
    assert container.registry.get(info["platform_id"]).webhook_url is None


def test_the_demo_receiver_takes_only_pushes_signed_with_the_platforms_secret(container: Container) -> None:
    info = _demo(container)
    platform_id, body = info["platform_id"], b'{"type":"order.issued"}'
    [secret] = container.registry.signing_secrets(platform_id)
    stamp = int(container.clock.now().timestamp())
    with TestClient(create_app(container, run_workers=False, demo=True)) as client:
        path = f"/demo/receiver/{platform_id}"
        signed = webhook_headers([secret], "msg_1", stamp, body)
        assert client.post(path, content=body, headers=signed).status_code == 204
        forged = webhook_headers([generate_secret()], "msg_1", stamp, body)
        refused = client.post(path, content=body, headers=forged)
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
        assert client.post("/demo/receiver/nobody", content=body, headers=signed).status_code == 404
        declared = client.get("/openapi.json").json()["paths"]["/demo/receiver/{platform_id}"]["post"]["responses"]
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        assert set(declared) == {"204", "401", "404", "422"}
        assert all(declared[status]["content"] == problem for status in ("401", "404", "422"))
    with TestClient(create_app(container, run_workers=False)) as client:
        assert client.post(path, content=body, headers=signed).status_code == 404  # only the demo mounts it


# ----------------------------------------------------------------------------------------- the real command


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_takedown_run_demo_serves_the_dashboards_figures(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`takedown run --demo` in a fresh directory, as `make run` starts it: the dashboard's data is there at once,
    and the ledger takes the backdated history (on PostgreSQL the sequencer numbers it before the feeder's first
    checkpoint, else the feeder would refuse it as backdated)."""
    port = unused_port()
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'takedown.db'}"
    else:
        url = fresh_pg_url(request.getfixturevalue("pg_template"))
        request.addfinalizer(lambda: drop_pg(url))
    env = {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": url,
        "TAKEDOWN_ENVIRONMENT": "development",
        "TAKEDOWN_WRITER_KEY_FILE": str(tmp_path / "writer.key"),
        "TAKEDOWN_LEDGER_KEY_FILE": str(tmp_path / "ledger.key"),
        "TAKEDOWN_SECRETS_KEK_FILE": str(tmp_path / "secrets.kek"),
        "TAKEDOWN_LOG_LEVEL": "WARNING",
        "TAKEDOWN_WEBHOOK_ALLOW_LIST": '["127.0.0.1"]',  # as `make run` sets it: the demo receiver is this process
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
                time.sleep(0.1)
        keys_file = "takedown.demo-keys.json" if backend == "sqlite" else "demo-keys.json"
        keys = json.loads((tmp_path / keys_file).read_text())
        headers = {"Authorization": f"Bearer {keys['auditor']}"}
        while True:  # the projection catches up within a poll or two
            overview = httpx.get(f"{base}/v1/dashboard/overview", headers=headers, timeout=10)
            assert overview.status_code == 200, overview.text
            shown = overview.json()
            # Every sample projected, the one waiting for its push delivered to the demo receiver.
            if shown["tiles"]["total"] == len(demo.scenario()) and not shown["tiles"]["counts"]["awaiting_delivery"]:
                break
            assert time.monotonic() < deadline, shown["tiles"]
            time.sleep(0.2)
        counts = shown["tiles"]["counts"]
        assert counts["met"] and counts["met_late"] and counts["at_risk"] and counts["breached"]
        assert shown["urgent_total"] == counts["at_risk"] + counts["breached"] and shown["daily"]
        report = httpx.get(f"{base}/v1/transparency/report", timeout=10).json()
        assert report["total"]["orders"] > 0
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        newest = httpx.get(f"{base}/v1/orders", headers=admin, timeout=10).json()["items"][:2]
        assert {o["notified_via"] for o in newest} == {"webhook", "inbox"}, newest
        while (ledger := httpx.get(f"{base}/readyz", timeout=10).json()["ledger"]).get("status") == "ok":
            checkpoint = httpx.get(f"{base}/v1/ledger/checkpoint", timeout=10)
            if (
                checkpoint.status_code == 200 and checkpoint.json()["tree_size"] >= 150
            ):  # the history: 37 orders, 199 events
                break
            assert time.monotonic() < deadline, checkpoint.text
            time.sleep(0.2)
        assert ledger["status"] == "ok", ledger
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert f"demo sample orders: {len(demo.scenario())} issued" in output, output
    assert f"demo webhook: {base}/demo/receiver/" in output, output


def test_a_database_whose_ledger_signed_a_checkpoint_gets_no_backdated_history(container: Container) -> None:
    container.ledger.checkpoint()  # a service that ran before, without the demo
    info = _demo(container)
    assert info["seeded"] == 0 and info["not_seeded"].startswith("the ledger has signed a checkpoint")
    assert _orders(container) == []


def test_a_demo_platform_registered_recently_gets_no_history_before_it(container: Container) -> None:
    """A demo of before the samples: its platform's representative was not on record when they would begin."""
    container.registry.register("admin", {**platform_fields(demo.PLATFORM_NAME), "webhook_url": None})
    info = _demo(container)
    assert info["seeded"] == 0 and "registered after" in info["not_seeded"]
    assert _orders(container) == []
