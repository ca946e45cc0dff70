"""Logging: JSON lines with their fields, the request id of an HTTP request in its lines and its events, and the
sequencer's failures logged without a storm."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.db import Database
from shared.eventstore import EventStore
from shared.eventstore.sequencer import Sequencer
from shared.logs import bind_request_id, unbind_request_id
from tests.builders import order_body
from tests.logcapture import json_logs
from tests.support import Api


def test_each_record_is_one_json_object_with_time_level_logger_message_and_the_request_id() -> None:
    with json_logs() as lines:
        log = logging.getLogger("takedown.test")
        log.debug("not at INFO")
        bind_request_id("req-1")
        try:
            log.info("order %s issued", "o-1", extra={"status": 201})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("it failed")
        finally:
            unbind_request_id()
        log.warning("after the request")
        logging.getLogger("httpx").info("HTTP Request: POST ... (one per webhook attempt)")
    first, second, third = lines.all()
    assert list(first)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert first["message"] == "order o-1 issued" and first["status"] == 201
    assert (first["level"], first["logger"], first["request_id"]) == ("info", "takedown.test", "req-1")
    assert first["time"].endswith("Z")
    assert abs((datetime.fromisoformat(first["time"]) - datetime.now(UTC)).total_seconds()) < 60
    assert second["level"] == "error" and second["request_id"] == "req-1"
    assert "ValueError: boom" in second["exception"]
    assert third["message"] == "after the request" and "request_id" not in third


def test_a_scheduler_job_run_writes_no_line_at_info_but_its_failure_does() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    ran, failed = threading.Event(), threading.Event()

    def fails() -> None:
        failed.set()
        raise RuntimeError("the job failed")

    with json_logs() as lines:
        scheduler = BackgroundScheduler()
        scheduler.add_job(ran.set, "date", run_date=datetime.now(UTC))
        scheduler.add_job(fails, "date", run_date=datetime.now(UTC))
        scheduler.start()
        try:
            assert ran.wait(5) and failed.wait(5)
            time.sleep(0.2)  # the executor logs a job's outcome after it returns
        finally:
            scheduler.shutdown(wait=True)
    logged = [line for line in lines.all() if line["logger"].startswith("apscheduler")]
    assert [line["level"] for line in logged] == ["error"], logged
    assert "the job failed" in logged[0]["exception"]


def test_a_request_returns_its_x_request_id_and_its_log_line_and_events_carry_it(api: Api) -> None:
    with json_logs() as lines:
        r = api.call(
            "POST", "/v1/orders", "issuer", json=order_body(api.platform_a), headers={"X-Request-Id": "req-Abc.42"}
        )
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] == "req-Abc.42"
    [line] = lines.where(message="request finished", request_id="req-Abc.42")
    assert (line["method"], line["path"], line["status"], line["logger"]) == (
        "POST",
        "/v1/orders",
        201,
        "takedown.http",
    )
    with api.container.db.read() as conn:
        [issued] = api.container.store.read_stream(conn, r.json()["id"])
    assert issued.meta["request_id"] == "req-Abc.42"


@pytest.mark.parametrize("given", [None, "x" * 129, "bad\tid", " padded", "ключ".encode()])
def test_a_missing_or_unusable_request_id_is_replaced_by_a_new_one(api: Api, given: str | bytes | None) -> None:
    headers = {} if given is None else {"X-Request-Id": given}
    with json_logs() as lines:
        r = api.call("GET", "/healthz", None, headers=headers)
    made = r.headers["x-request-id"]
    assert made != given and len(made) == 32 and int(made, 16) >= 0
    assert lines.where(message="request finished", request_id=made)


def test_a_refused_request_carries_its_request_id_too(api: Api) -> None:
    r = api.call("GET", "/v1/orders/nope", "admin", headers={"X-Request-Id": "req-404"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "req-404"


class FailingSequencer(Sequencer):
    """A sequencer whose database is down: every run fails."""

    def __init__(self, db: Database, **kwargs: float) -> None:
        super().__init__(db, EventStore(db.dialect), interval_s=0.005, min_gap_s=0.0, **kwargs)
        self.runs = 0
        self.failed_enough = threading.Event()

    def run_once(self) -> int:
        self.runs += 1
        if self.runs >= 20:
            self.failed_enough.set()
        raise ConnectionError("database unreachable")


@pytest.mark.postgres
def test_the_sequencer_logs_its_failures_once_per_interval_not_once_per_retry(pg_db: Database) -> None:
    sequencer = FailingSequencer(pg_db, log_every_s=60)
    with json_logs() as lines:
        sequencer.start()
        try:
            assert sequencer.failed_enough.wait(10), "the loop stopped retrying"
        finally:
            sequencer.stop()
    [line] = lines.all()
    assert (line["level"], line["logger"]) == ("error", "takedown.sequencer")
    assert "ConnectionError: database unreachable" in line["exception"]


@pytest.mark.postgres
def test_the_sequencer_logs_again_after_the_interval_with_the_count_it_held_back(pg_db: Database) -> None:
    sequencer = FailingSequencer(pg_db, log_every_s=0.2)
    with json_logs() as lines:
        sequencer.start()
        try:
            deadline = time.monotonic() + 10
            while len(lines.all()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            sequencer.stop()
    first, second, *_ = lines.all()
    assert first["message"] == "numbering events failed; retrying"
    assert "more failures since the last one logged" in second["message"]


def test_the_settings_a_process_logs_have_no_secret_and_no_password() -> None:
    from pydantic import SecretStr

    from shared.settings import Settings

    settings = Settings(
        database_url="postgresql+psycopg://takedown_app:hunter2@db.internal:5432/takedown",
        supervisor_webhook_url="https://ops:pa55@supervisor.example/hook",
        metrics_key=SecretStr("metrics-secret"),
    )
    shown = settings.redacted()
    assert shown["database_url"] == "postgresql+psycopg://takedown_app:***@db.internal:5432/takedown"
    assert shown["supervisor_webhook_url"] == "https://ops:***@supervisor.example/hook"
    assert shown["metrics_key"] == "**********" and shown["sla_hours"] == settings.sla_hours
    assert not any(secret in json.dumps(shown) for secret in ("hunter2", "pa55", "metrics-secret"))


def test_a_long_running_process_logs_its_configuration_once_at_start(db_url: str, tmp_path: Path) -> None:
    from tests.builders import TEST_KEK

    env = {k: v for k, v in os.environ.items() if not k.startswith("TAKEDOWN_")}
    env |= {"TAKEDOWN_DATABASE_URL": db_url, "TAKEDOWN_LOG_JSON": "true", "TAKEDOWN_SECRETS_KEK": TEST_KEK,
            "TAKEDOWN_WRITER_KEY_FILE": str(tmp_path / "writer.key"), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    takedown = Path(sys.executable).parent / "takedown"
    proc = subprocess.Popen([str(takedown), "sequencer"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert first["message"] == "starting sequencer" and first["service"] == "sequencer"
    assert first["settings"]["database_url"] == db_url  # the test server's trust auth: no password to hide
    assert first["settings"]["secrets_kek"] == "**********"
    assert TEST_KEK not in json.dumps(first) + out.decode()
    assert proc.returncode == 0
