"""The signing key lives outside the database: an environment value, or a 0600 file made once on first use."""

from __future__ import annotations

import base64
import logging
import stat
import threading
from pathlib import Path

import pytest

from services.ledger.checkpoints import load_or_create_seed
from services.ledger.errors import SigningKeyError
from services.ledger.service import Ledger
from shared.eventstore import EventStore


def test_key_file_is_made_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ledger.key"
    seed = load_or_create_seed(None, path)
    assert len(seed) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_seed(None, path) == seed  # read back, not made again


def test_environment_value_wins_and_bad_keys_are_refused(tmp_path: Path) -> None:
    seed = bytes(range(32))
    assert load_or_create_seed(base64.b64encode(seed).decode(), tmp_path / "unused.key") == seed
    assert not (tmp_path / "unused.key").exists()
    with pytest.raises(SigningKeyError):
        load_or_create_seed(base64.b64encode(b"short").decode(), tmp_path / "unused.key")
    (tmp_path / "bad.key").write_text("not base64!\n")
    with pytest.raises(SigningKeyError):
        load_or_create_seed(None, tmp_path / "bad.key")


def test_the_feeder_loop_logs_its_failures_and_keeps_running(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = threading.Semaphore(0)

    def broken(*_: object, **__: object) -> list[object]:
        calls.release()
        raise RuntimeError("connection dropped")

    monkeypatch.setattr(EventStore, "read_all", broken)
    ledger.feeder.loop.interval_s = 0.01
    with caplog.at_level(logging.ERROR, logger="takedown.ledger"):
        ledger.start()
        try:
            assert calls.acquire(timeout=10) and calls.acquire(timeout=10)  # it failed, and tried again
        finally:
            ledger.stop()
    assert any("ledger feeder: run failed" in r.message and r.exc_info for r in caplog.records)
