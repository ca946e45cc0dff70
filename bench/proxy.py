"""The shipped nginx configuration (ops/nginx/) run by real nginx: unprivileged, in a temporary prefix.

Used by bench/intake.py's fleet and by the tests (tests/ops, tests/system). nginx runs as `nobody` when started
as root, with its prefix, pid, logs and temp paths in a temporary directory and a free 127.0.0.1 port. Raises,
never skips, when nginx is missing (`make install` brings it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NGINX_DIR = ROOT / "ops" / "nginx"
CONF = NGINX_DIR / "takedown.conf"
NOBODY = 65534


def free_port() -> int:
    """A 127.0.0.1 port nobody listens on now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upstreams_conf(ports: list[int]) -> str:
    """The shipped upstreams.conf with each API service's address replaced by a test server's, parameters kept."""
    shipped = (NGINX_DIR / "upstreams.conf").read_text()
    addresses = re.findall(r"^server (\S+)", shipped, flags=re.M)
    assert addresses == ["api-1:8000", "api-2:8000"], addresses
    for address, port in zip(addresses, ports, strict=True):
        shipped = shipped.replace(f"server {address} ", f"server 127.0.0.1:{port} ")
    return shipped


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed: `make install` installs Debian's package")
    return found


@dataclass
class Proxy:
    """nginx running the repository's takedown.conf on a free port."""

    base: str
    process: subprocess.Popen[bytes]
    prefix: Path

    def log(self) -> str:
        return (self.prefix / "stderr.log").read_text(errors="replace")


def start_nginx(upstream_ports: list[int]) -> Proxy:
    """Start nginx with the shipped file (copied beside its includes) and wait until it accepts connections."""
    prefix = Path(tempfile.mkdtemp(prefix="takedown-nginx-"))
    shutil.copyfile(CONF, prefix / "takedown.conf")
    port = free_port()
    (prefix / "listen.conf").write_text(f"listen 127.0.0.1:{port};\n")
    (prefix / "upstreams.conf").write_text(upstreams_conf(upstream_ports))
    stdout = open(prefix / "access.log", "wb")  # noqa: SIM115 - handed to the process, closed below
    stderr = open(prefix / "stderr.log", "wb")  # noqa: SIM115
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # never root: everything it writes is in the prefix, which it owns
        for path in (prefix, *prefix.rglob("*")):
            os.chown(path, NOBODY, NOBODY)
        run_as = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    command = [nginx_binary(), "-p", f"{prefix}/", "-c", str(prefix / "takedown.conf"), "-e", "stderr"]
    process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=stdout, stderr=stderr, **run_as)
    stdout.close()
    stderr.close()
    proxy = Proxy(f"http://127.0.0.1:{port}", process, prefix)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = proxy.log()
                stop_nginx(proxy)
                raise RuntimeError(f"nginx did not start (exit {process.returncode}): {log}") from None
            time.sleep(0.05)


def stop_nginx(proxy: Proxy) -> None:
    proxy.process.send_signal(signal.SIGQUIT)  # graceful: workers finish their requests
    try:
        proxy.process.wait(10)
    except subprocess.TimeoutExpired:
        proxy.process.kill()
        proxy.process.wait()
    shutil.rmtree(proxy.prefix, ignore_errors=True)
