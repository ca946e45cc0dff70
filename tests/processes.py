"""The shipped `takedown` command as OS processes under test: its settings from the environment, its signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.builders import TEST_KEK

ROOT = Path(__file__).resolve().parents[1]
TAKEDOWN = Path(sys.executable).parent / "takedown"


def process_env(db_url: str, name: str, env: dict[str, str]) -> dict[str, str]:
    """The environment a `takedown` process under test runs with: only these TAKEDOWN_ settings, none inherited."""
    # application_name lets a test see in pg_stat_activity that the process is up.
    sep = "&" if "?" in db_url else "?"
    url = f"{db_url}{sep}application_name={name}" if db_url.startswith("postgresql") else db_url
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TAKEDOWN_")},
        "TAKEDOWN_DATABASE_URL": url,
        "TAKEDOWN_WEBHOOK_ALLOW_LIST": '["127.0.0.1"]',
        "TAKEDOWN_EMBEDDED_WORKERS": "false",
        "TAKEDOWN_ENVIRONMENT": "test",
        "TAKEDOWN_NOTIFIER_PROCESSES": "1",
        "TAKEDOWN_SECRETS_KEK": TEST_KEK,
        "PYTHONUNBUFFERED": "1",
        **env,
    }


class TakedownProcess:
    """One `takedown <args>` OS process; its output goes to a file the test can show when it fails."""

    def __init__(self, args: tuple[str, ...], db_url: str, name: str, log_dir: Path, **env: str) -> None:
        self.args, self.db_url, self.name, self.env = args, db_url, name, env
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        environment = process_env(self.db_url, self.name, self.env)
        return subprocess.Popen(
            [str(TAKEDOWN), *self.args], cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def restart(self) -> None:
        """Start the same command again (after it stopped or was killed), appending to the same log."""
        assert not self.alive(), f"{self.name} is still running"
        self.proc = self._start()

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (the process drains what it is doing); SIGKILL as a last resort."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the process dies at once, holding whatever it held."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
