"""`takedown witness vkey` and `takedown witness serve`, the latter as a real process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import cli
from shared.settings import Settings
from shared.tlog.cosignature import parse_cosigner_vkey
from tests.support import free_port
from tests.witness.conftest import ORIGIN, Log
from tests.witness.spec_verifier import checkpoint_body, parse_vkey, verify_response


def test_vkey_makes_the_key_file_0600_once_and_prints_the_cosigner_key(tmp_path: Path) -> None:
    key_file = tmp_path / "witness.key"
    args = ["witness", "vkey", "--name", "witness.example.net/w1", "--key-file", str(key_file)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    vkey = first.output.strip()
    assert parse_vkey(vkey)[0] == "witness.example.net/w1" and parse_cosigner_vkey(vkey).name == parse_vkey(vkey)[0]
    assert CliRunner().invoke(cli, args).output.strip() == vkey  # the same key, never a new one


def test_serve_refuses_to_start_without_a_log_or_with_a_bad_one(tmp_path: Path, log: Log) -> None:
    base = ["witness", "serve", "--key-file", str(tmp_path / "k"), "--db-url", f"sqlite:///{tmp_path / 'w.db'}"]
    none = CliRunner().invoke(cli, base)
    assert none.exit_code == 2 and "no log to witness" in none.output
    no_equals = CliRunner().invoke(cli, [*base, "--log", ORIGIN])
    assert no_equals.exit_code == 2 and "ORIGIN=VKEY" in no_equals.output
    bad_key = CliRunner().invoke(cli, [*base, "--log", f"{ORIGIN}=not+a+key"])
    assert bad_key.exit_code == 2 and "witnessed log" in bad_key.output


def test_the_logs_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch, log: Log) -> None:
    monkeypatch.setenv("TAKEDOWN_WITNESS_LOGS", json.dumps({ORIGIN: log.signer.verifier.verifier_key}))
    assert Settings().witness_logs == {ORIGIN: log.signer.verifier.verifier_key}


def test_serve_answers_add_checkpoint(tmp_path: Path, log: Log) -> None:
    port = free_port()
    key_file, name = tmp_path / "witness.key", "witness.example.net/cli"
    command = [sys.executable, "-m", "services.cli", "witness", "serve", "--port", str(port), "--name", name]
    command += ["--key-file", str(key_file), "--db-url", f"sqlite:///{tmp_path / 'witness.db'}"]
    command += ["--log", f"{ORIGIN}={log.signer.verifier.verifier_key}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAKEDOWN_")}
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                vkey = httpx.get(f"{base}/vkey").text.strip()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the witness did not start"
                time.sleep(0.1)
        assert vkey.startswith(f"{name}+")
        answer = httpx.post(f"{base}/add-checkpoint", content=log.submission(0, 6))
        assert answer.status_code == 200, answer.text
        assert verify_response(answer.text, checkpoint_body(log.checkpoint(6)), vkey) > 1_700_000_000
        assert key_file.stat().st_mode & 0o777 == 0o600
    finally:
        server.terminate()
        server.wait(10)
