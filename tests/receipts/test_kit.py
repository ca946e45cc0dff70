"""The kit at its edges: a bad signature is refused and not kept, a forked log is refused and the evidence kept,
a failed forward never loses the receipt, and the background pass runs on its own."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from services.bootstrap import receipts_from_settings
from services.cli import cli
from services.http.receipts import create_receipts_app
from services.receipts import store
from services.receipts.client import LogClient
from services.receipts.service import ReceiptsKit, backoff_s
from services.webhooks.signing import generate_secret, webhook_headers
from shared.clock import FrozenClock
from shared.db import Database, make_engine
from shared.settings import Settings
from shared.tlog.note import NoteSigner, Verifier, open_checkpoint
from tests.conftest import fresh_sqlite_url
from tests.logcapture import json_logs
from tests.notifier.receiver import Respond
from tests.support import make_api, serve

from .conftest import NOW, running_platform


def _verifier() -> Verifier:
    return NoteSigner("log.test/takedown", bytes(32)).verifier


def _post(url: str, secret: str, body: bytes, msg_id: str = "msg_1", at: int | None = None) -> httpx.Response:
    headers = webhook_headers([secret], msg_id, int(NOW.timestamp()) if at is None else at, body)
    return httpx.post(url, content=body, headers=headers, timeout=5)


def test_a_bad_signature_is_refused_401_and_not_kept(tmp_path: Path, sqlite_template: Path) -> None:
    with running_platform(tmp_path, sqlite_template, witnessed=False) as p:
        body = b'{"type": "order.issued", "data": {"order": {"id": "o1"}}}'
        for refused in (
            _post(f"{p.kit_url}/webhook", generate_secret(), body),  # another secret
            _post(f"{p.kit_url}/webhook", p.kit.secrets[0], body, at=int(NOW.timestamp()) - 3600),  # stale
        ):
            assert refused.status_code == 401, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"] == "/problems/bad-webhook-signature"
        tampered = webhook_headers(p.kit.secrets, "msg_2", int(NOW.timestamp()), body)
        assert httpx.post(f"{p.kit_url}/webhook", content=body + b" ", headers=tampered).status_code == 401
        assert httpx.get(f"{p.kit_url}/status").json()["receipts"] == 0
        # The same push signed with the platform's secret is kept, once however often it comes.
        for _ in range(2):
            kept = _post(f"{p.kit_url}/webhook", p.kit.secrets[0], body)
            assert kept.status_code == 200, kept.text
        assert kept.json() == {"webhook_id": "msg_1", "duplicate": True}
        assert httpx.get(f"{p.kit_url}/status").json()["receipts"] == 1


def test_a_forked_log_is_refused_and_both_checkpoints_are_kept(tmp_path: Path, sqlite_template: Path) -> None:
    for d in ("honest", "forked"):
        (tmp_path / d).mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'receipts.db'}")
    store.create(engine)
    with (
        make_api(fresh_sqlite_url(sqlite_template, tmp_path / "honest")) as honest,
        make_api(fresh_sqlite_url(sqlite_template, tmp_path / "forked")) as forked,
        serve(honest.client.app) as honest_url,
        serve(forked.client.app) as forked_url,
    ):
        # One origin and one key, two histories: what a log showing two views must serve.
        verifier = honest.container.ledger.verifier
        assert forked.container.ledger.verifier == verifier
        honest.issue()
        forked.issue()
        forked.issue(issuer_reference="MCI-2026-0002")
        for api in (honest, forked):
            api.container.sequencer.catch_up()
            api.container.ledger.checkpoint()

        def kit(url: str) -> ReceiptsKit:
            return ReceiptsKit(Database(engine), LogClient(url, None), verifier, ["x"], FrozenClock(NOW))

        seen = kit(honest_url).sync()
        assert seen.alerts == [] and seen.checkpoint_size == honest.container.ledger.latest_checkpoint().tree_size
        shown_fork = kit(forked_url)
        with json_logs() as lines:
            report = shown_fork.sync()
        [line] = lines.where(logger="takedown.receipts", level="error")
        assert "fork" in line["message"] and line["checkpoint"] == forked.container.ledger.cosigned_checkpoint().note
        assert len(report.alerts) == 1 and report.alerts[0].startswith("fork: "), report
        # Refused: the kit keeps the view it had, and says so.
        assert report.checkpoint_size == seen.checkpoint_size
        status = shown_fork.status()
        assert (
            status["ok"] is False
            and status["alerts"] == 1
            and status["checkpoint"]["tree_size"] == seen.checkpoint_size
        )
        [alert] = status["latest_alerts"]
        assert alert.checkpoint == forked.container.ledger.cosigned_checkpoint().note
        assert alert.earlier_checkpoint == honest.container.ledger.cosigned_checkpoint().note
        # Both notes verify with the log's one key and no proof joins them: evidence against the log, for anyone.
        a, b = (open_checkpoint(n, verifier, verifier.name) for n in (alert.checkpoint, alert.earlier_checkpoint))
        assert a.size != b.size and alert.detail["consistency_proof"]
        # Shown again, it is refused again (one record of the evidence), and the honest view still stands.
        assert shown_fork.sync().alerts
        assert shown_fork.status()["latest_alerts"] == [alert]
        with Database(engine).read() as conn:
            assert [c.size for c in store.all_checkpoints(conn)] == [seen.checkpoint_size]
    engine.dispose()


def test_a_failed_forward_keeps_the_receipt_and_is_retried(tmp_path: Path, sqlite_template: Path) -> None:
    with running_platform(tmp_path, sqlite_template, witnessed=False) as p:
        p.system.script("/orders", Respond(500), Respond(200))
        body = b'{"type": "order.issued", "data": {"order": {"id": "o1", "platform_id": "p"}}}'
        assert _post(f"{p.kit_url}/webhook", p.kit.secrets[0], body).status_code == 200
        assert p.kit.forward_pending() == 0  # the platform's system answered 500
        status = p.kit.status()
        assert status["receipts"] == 1 and status["forwards_failing"] == 1
        assert p.kit.forward_pending() == 0  # not due again before its backoff
        p.kit_clock.advance(timedelta(seconds=backoff_s(1, 300) + 1))
        assert p.kit.forward_pending() == 1
        assert p.kit.status()["forwards_pending"] == 0
        assert [r.body for r in p.system.requests("/orders")] == [body, body]
        with Database(make_engine(p.kit_db_url)).read() as conn:
            row = conn.execute(select(store.receipts)).one()
        assert row.forward_state == "forwarded" and row.forward_attempts == 2 and row.forward_error is None


def test_the_background_pass_follows_an_order_into_the_log(tmp_path: Path, sqlite_template: Path) -> None:
    with running_platform(tmp_path, sqlite_template, witnessed=False) as p:
        p.api.issue()
        assert p.push() == 1
        p.checkpoint()
        p.kit.poll_s = 0.05
        p.kit.start()
        deadline = time.monotonic() + 20
        while p.kit.status()["events_proven"] < 2:
            assert time.monotonic() < deadline, p.kit.status()
            time.sleep(0.05)
        assert p.kit.status()["forwards_pending"] == 0


def test_the_kit_is_wired_from_its_settings(tmp_path: Path) -> None:
    settings = Settings(
        receipts_database_url=f"sqlite:///{tmp_path / 'r.db'}",
        receipts_webhook_secrets=[generate_secret()],
        receipts_log_key=_verifier().verifier_key,
    )
    kit = receipts_from_settings(settings)
    assert kit.verifier == _verifier() and kit.forward_url is None
    kit.stop()
    with pytest.raises(ValueError, match="RECEIPTS_LOG_KEY"):
        receipts_from_settings(settings.model_copy(update={"receipts_log_key": None}))
    with pytest.raises(ValueError, match="SQLite"):
        receipts_from_settings(settings.model_copy(update={"receipts_database_url": "postgresql://x/y"}))
    with pytest.raises(ValueError, match="WEBHOOK_SECRETS"):
        receipts_from_settings(settings.model_copy(update={"receipts_webhook_secrets": []}))


def test_the_app_declares_its_routes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    store.create(engine)
    kit = ReceiptsKit(Database(engine), LogClient("http://127.0.0.1:1", None), _verifier(), ["x"], FrozenClock(NOW))
    document = create_receipts_app(kit).openapi()
    assert document["paths"]["/webhook"]["post"]["responses"]["401"]["content"]["application/problem+json"]
    assert document["paths"]["/status"]["get"]["responses"]["200"]
    engine.dispose()


def test_a_push_whose_receipt_is_not_the_logs_leaf_is_an_alert(tmp_path: Path, sqlite_template: Path) -> None:
    with running_platform(tmp_path, sqlite_template, witnessed=False) as p:
        p.api.issue()
        assert p.push() == 1
        with Database(make_engine(p.kit_db_url)).read() as conn:
            body = json.loads(conn.execute(select(store.receipts.c.body)).scalar_one())
        # The same event pushed again with another receipt (as a service telling the platform one leaf and the
        # log another would).
        body["data"]["event"]["leaf_hash"] = base64.b64encode(bytes(32)).decode()
        assert _post(f"{p.kit_url}/webhook", p.kit.secrets[0], json.dumps(body).encode(), "msg_x").status_code == 200
        p.checkpoint()
        report = p.kit.sync()
        assert [a.split(":")[0] for a in report.alerts] == ["leaf-mismatch"], report
        assert "is not its leaf in the log" in report.alerts[0]
        assert p.kit.status()["ok"] is False


def test_serve_refuses_to_start_without_the_logs_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAKEDOWN_RECEIPTS_LOG_KEY", raising=False)
    args = ["receipts", "serve", "--db-url", f"sqlite:///{tmp_path / 'r.db'}", "--secret", generate_secret()]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "TAKEDOWN_RECEIPTS_LOG_KEY" in refused.output


def test_a_checkpoint_not_signed_by_the_pinned_key_is_refused(tmp_path: Path, sqlite_template: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'receipts.db'}")
    store.create(engine)
    with make_api(fresh_sqlite_url(sqlite_template, tmp_path)) as api, serve(api.client.app) as url:
        api.container.ledger.checkpoint()
        origin = api.container.ledger.verifier.name
        impostor = NoteSigner(origin, bytes(32)).verifier  # the log's name, another key
        kit = ReceiptsKit(Database(engine), LogClient(url, None), impostor, ["x"], FrozenClock(NOW))
        report = kit.sync()
        assert [a.split(":")[0] for a in report.alerts] == ["bad-checkpoint-signature"], report
        assert report.checkpoint_size is None and kit.status()["checkpoints"] == 0
        [alert] = kit.status()["latest_alerts"]
        assert alert.checkpoint == api.container.ledger.cosigned_checkpoint().note
    engine.dispose()
