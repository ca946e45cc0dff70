"""The `takedown` command's argument checks (the processes it starts are tested in tests/notifier)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import cli
from tests.conftest import fresh_sqlite_url
from tests.notifier.receiver import Receiver, Respond, unused_port


def test_a_negative_process_count_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["notifier", "--processes", "-1"])
    assert result.exit_code == 2
    assert "processes" in result.output


def test_healthcheck_wants_a_reachable_migrated_database_and_a_200(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", fresh_sqlite_url(sqlite_template, tmp_path))
    assert runner.invoke(cli, ["healthcheck"]).exit_code == 0
    with Receiver() as receiver:  # a real HTTP server on 127.0.0.1
        url = receiver.script("/readyz", Respond(503), Respond(200))
        refused = runner.invoke(cli, ["healthcheck", "--http", url])
        assert refused.exit_code == 1 and "answered 503" in refused.output
        assert runner.invoke(cli, ["healthcheck", "--http", url]).exit_code == 0
    gone = runner.invoke(cli, ["healthcheck", "--http", f"http://127.0.0.1:{unused_port()}/readyz"])
    assert gone.exit_code == 1 and "ConnectError" in gone.output
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", f"sqlite:///{tmp_path / 'never-migrated.db'}")
    behind = runner.invoke(cli, ["healthcheck"])
    assert behind.exit_code == 1 and "migration None" in behind.output
