"""The `takedown` command's argument checks (the processes it starts are tested in tests/notifier)."""

from __future__ import annotations

from typer.testing import CliRunner

from services.cli import cli


def test_a_negative_process_count_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["notifier", "--processes", "-1"])
    assert result.exit_code == 2
    assert "processes" in result.output
