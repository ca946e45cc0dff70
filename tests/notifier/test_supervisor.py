"""`takedown notifier` with TAKEDOWN_NOTIFIER_PROCESSES=2 on PostgreSQL: a supervisor and two worker processes.

The supervisor starts two `python -m services.cli notifier` children with the limits shared out between them,
forwards SIGTERM to them, and the children ask Linux (PR_SET_PDEATHSIG) to SIGTERM them if the supervisor dies.
These tests run the real command and look at the processes through /proc: who their parent is, what environment
they got, whether they are still alive; and at delivery_attempts.worker (`host:pid:object`) for who sent what.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from services.bootstrap import Container
from services.notifier.tables import deliveries, delivery_attempts
from tests.conftest import PG_ADMIN_URL

from .fleet import NotifierProcess, TrackingReceiver, issue_orders, register_platforms, wait_for_delivered, world

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

CHILDREN = 2
PG_PORT = make_url(PG_ADMIN_URL).port or 5432


# ----------------------------------------------------------------------------------------------- /proc helpers


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2 :].split()  # the command name in parentheses may contain spaces
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped yet, e.g. an orphan of a non-reaping init, counts as dead)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _parent(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _is_notifier_child(pid: int) -> bool:
    """The process is the child command (`python -m services.cli notifier`), not a fork still before its exec."""
    return "services.cli" in _cmdline(pid)


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid and _alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def _connected_to_db(pid: int) -> bool:
    """Whether the process holds an established TCP connection to PostgreSQL (its claim loop has started:
    bootstrap connects lazily, and the first query a notifier makes is its first claim)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        lines = []
        for table in ("tcp", "tcp6"):
            lines += Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    for line in lines:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if remote_port == PG_PORT and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
            return True
    return False


def _wait(condition: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {message()}")
        time.sleep(0.05)


# -------------------------------------------------------------------------------------------------- fixtures


class Supervisor:
    """A running `takedown notifier` with TAKEDOWN_NOTIFIER_PROCESSES=2, and the pids of its children."""

    def __init__(self, db_url: str, log_dir: Path, **env: str) -> None:
        self.process = NotifierProcess(db_url, "supervisor", log_dir, TAKEDOWN_NOTIFIER_PROCESSES=str(CHILDREN), **env)
        self.children: list[int] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.process.log()

    def wait_for_children(self, timeout: float = 20) -> list[int]:
        """Wait until the supervisor has its two children and both are claiming; returns their pids."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.proc.poll()
            assert code is None, f"the supervisor exited with {code} while starting:\n{self.log()}"
            kids = _children(self.pid)
            self.children = sorted(set(self.children) | set(kids))  # remember every child, for the clean-up
            ready = [k for k in kids if _is_notifier_child(k) and _connected_to_db(k)]
            if len(ready) == CHILDREN and len(kids) == CHILDREN:
                self.children = ready
                return ready
            assert len(kids) <= CHILDREN, f"more than {CHILDREN} children: {[_cmdline(k) for k in kids]}"
            assert kids or not _connected_to_db(self.pid), f"the supervisor claims itself, no children\n{self.log()}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{CHILDREN} claiming children expected within {timeout} s; children {kids}, "
                    f"of which connected to PostgreSQL {ready}\n{self.log()}"
                )
            time.sleep(0.05)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the supervisor did not exit within {timeout} s; children alive: "
                f"{[k for k in self.children if _alive(k)]}\n{self.log()}"
            ) from None

    def clean_up(self) -> None:
        """SIGKILL the supervisor and every child still running, whatever state the test left them in."""
        if self.process.proc.poll() is None:
            self.children = sorted(set(self.children) | set(_children(self.pid)))
            self.process.kill()
        self.process.terminate()  # only closes the log now
        for pid in self.children:
            if _alive(pid) and _is_notifier_child(pid):
                os.kill(pid, signal.SIGKILL)
        _wait(
            lambda: not any(_alive(pid) for pid in self.children),
            5,
            lambda: f"children {self.children} survived SIGKILL",
        )


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """Start supervisors; every process they started is killed after the test, passed or failed."""
    started: list[Supervisor] = []

    def start(db_url: str, **env: str) -> Supervisor:
        sup = Supervisor(db_url, tmp_path, **env)
        started.append(sup)
        sup.wait_for_children()
        return sup

    yield start
    for sup in started:
        sup.clean_up()


def _attempt_pids(container: Container) -> dict[int, int]:
    """pid → number of attempts it recorded, from delivery_attempts.worker (`host:pid:object`)."""
    with container.db.read() as conn:
        rows = conn.execute(select(delivery_attempts.c.worker, func.count()).group_by(delivery_attempts.c.worker))
        counts: dict[int, int] = {}
        for worker, n in rows:
            pid = int(worker.split(":")[1])
            counts[pid] = counts.get(pid, 0) + n
    return counts


def _assert_limits_shared_out(sup: Supervisor) -> None:
    """Each child got half the default total (64 requests) and half of each platform's 4 as its share, under the
    whole cap, which PostgreSQL counts across them; and is a single process."""
    for child in sup.children:
        env = _environ(child)
        names = (
            "TAKEDOWN_WEBHOOK_CONCURRENCY",
            "TAKEDOWN_WEBHOOK_PER_PLATFORM",
            "TAKEDOWN_WEBHOOK_PER_PLATFORM_PER_PROCESS",
        )
        shared = {k: env.get(k) for k in names}
        assert shared == dict(zip(names, ("32", None, "2"), strict=True)), child
        # A single notifier process, not another supervisor.
        assert env.get("TAKEDOWN_NOTIFIER_PROCESSES") == "1", child
        assert _children(child) == [], f"child {child} has children of its own"
    assert "TAKEDOWN_WEBHOOK_CONCURRENCY" not in _environ(sup.pid), (
        "this check needs the supervisor on the default limits"
    )


# ----------------------------------------------------------------------------------------------------- tests


def test_two_children_of_the_supervisor_share_the_limits_and_deliver_every_order(
    pg_url: str, supervisors: Callable[..., Supervisor]
) -> None:
    orders, platforms = 60, 3
    container = world(pg_url)
    try:
        # A short answer delay keeps each child's 2 slots per platform busy, so both get a share of the work.
        with TrackingReceiver(delay=0.1) as receiver:
            secrets = register_platforms(container, receiver, platforms)
            sup = supervisors(pg_url)
            children = sup.children
            assert sup.pid not in children
            _assert_limits_shared_out(sup)
            issue_orders(container, list(secrets), orders, "SUP")
            wait_for_delivered(container, orders, [sup.process], timeout=15)
            # Still the same two processes, still the supervisor's children, just before they are stopped.
            assert _children(sup.pid) == children, (_children(sup.pid), children)
            assert all(_parent(k) == sup.pid for k in children)
            code = sup.process.terminate()
            assert code == 0, f"the supervisor exited with {code} on SIGTERM\n{sup.log()}"
        with container.db.read() as conn:
            states = dict(conn.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all())
            statuses = conn.execute(select(delivery_attempts.c.status_code)).scalars().all()
        per_pid = _attempt_pids(container)
    finally:
        container.close()

    assert states == {"delivered": orders}
    assert len(statuses) == orders and set(statuses) == {200}
    # Exactly the two children sent, never the supervisor; and each of them did a real share.
    assert set(per_pid) == set(children), f"attempts by pids {per_pid}, children {children}, supervisor {sup.pid}"
    assert sup.pid not in per_pid
    assert min(per_pid.values()) >= 5, per_pid


def test_sigterm_to_the_supervisor_stops_the_children_gracefully(
    pg_url: str, supervisors: Callable[..., Supervisor]
) -> None:
    orders, platforms = 12, 3
    container = world(pg_url)
    try:
        # Slow answers: when SIGTERM arrives some requests are on the wire; the children must finish them.
        with TrackingReceiver(delay=0.6) as receiver:
            secrets = register_platforms(container, receiver, platforms)
            sup = supervisors(pg_url)
            issue_orders(container, list(secrets), orders, "TERM")
            _wait(lambda: len(receiver.in_flight()) >= 4, 10, lambda: f"requests in flight: {receiver.in_flight()}")
            assert all(_alive(k) for k in sup.children)
            sup.process.proc.send_signal(signal.SIGTERM)
            code = sup.wait_exit(timeout=10)
            alive = [k for k in sup.children if _alive(k)]
        exchanges = receiver.exchanges()  # once stopped: requests that were cut off are recorded by now
        with container.db.read() as conn:
            attempts = conn.execute(select(delivery_attempts)).all()
            delivered = set(conn.execute(select(deliveries.c.id).where(deliveries.c.state == "delivered")).scalars())
    finally:
        container.close()

    assert alive == [], f"children {alive} outlived the supervisor\n{sup.log()}"
    assert code == 0, f"the supervisor exited with {code} on SIGTERM\n{sup.log()}"
    # A forwarded SIGTERM is a graceful stop: every request that was sent was answered and recorded.
    assert exchanges, "nothing was sent"
    cut = [(e.webhook_id, e.status) for e in exchanges if e.status != 200]
    assert cut == [], f"requests cut off instead of finished: {cut}"
    answered = {e.webhook_id for e in exchanges}
    assert len(answered) == len(exchanges), "a delivery was sent twice"
    assert {a.delivery_id for a in attempts} == answered == delivered
    assert {int(a.worker.split(":")[1]) for a in attempts} <= set(sup.children)


def test_children_die_with_a_killed_supervisor(pg_url: str, supervisors: Callable[..., Supervisor]) -> None:
    sup = supervisors(pg_url)
    children = sup.children
    assert all(_alive(k) and _parent(k) == sup.pid for k in children)
    sup.process.kill()  # SIGKILL: no handler runs, nothing is forwarded; only PR_SET_PDEATHSIG is left
    killed_at = time.monotonic()
    _wait(
        lambda: not any(_alive(k) for k in children),
        5,
        lambda: (
            f"children still alive after the supervisor was killed: "
            f"{[(k, _stat(k)) for k in children if _alive(k)]}\n{sup.log()}"
        ),
    )
    print(f"children gone {time.monotonic() - killed_at:.2f} s after the supervisor was killed")


def test_supervisor_stops_when_a_child_dies(pg_url: str, supervisors: Callable[..., Supervisor]) -> None:
    sup = supervisors(pg_url)
    victim, other = sup.children
    os.kill(victim, signal.SIGKILL)
    code = sup.wait_exit(timeout=10)
    assert code != 0, f"a child died, yet the supervisor exited with 0\n{sup.log()}"
    assert not _alive(other), f"the other child {other} outlived the supervisor"
