"""Webhook delivery speed on PostgreSQL: the notifier beside a bare httpx loop, a black-holed platform, latency (issue 3).

Run: `.venv/bin/python bench/notifier.py [--orders N]` (PostgreSQL at 127.0.0.1:5432, user postgres; override with
BENCH_PG_URL=postgresql://user@host:port/admin_db). It creates databases named bench_notifier_* and drops them.

The receiver is a small keep-alive HTTP/1.1 server (asyncio protocol) in its own OS process: it answers 200 with an
empty body at once, never answers paths under /hole (a black-holed platform), and stamps every request with the
system-wide monotonic clock so other processes can compare times with it.

1. Throughput, healthy: 20 platforms, N orders issued round-robin through the OrderService (before the notifier
   starts), then `takedown notifier` (the real CLI with its defaults: one process per CPU, sharing 64 requests in
   flight and 4 per platform) delivers them; then the same with `--processes 1` (the same limits in one process).
   Rate = N / (the last delivery's recording time, from the database - the first request at the receiver), so
   start-up is not counted and every counted delivery is recorded (attempt row, order.delivered event, order view).
   CPU per delivery: the notifier's processes and the PostgreSQL backends serving the bench database, from /proc,
   counted from the first recorded delivery to the last.
2. Throughput, one platform black-holed: the same with platform 20's URL never answering (default 15 s timeout).
   Healthy rate = deliveries of the 19 healthy platforms / time until all of them are recorded, compared with the
   same 19 platforms in run 1 (their deliveries over run 1's duration). The runs repeat for --rounds rounds (each
   on a fresh database) and are averaged, because this machine's load drifts.
3. Baseline: a bare httpx loop in its own OS process, 64 concurrent requests (the notifier's total concurrency),
   POSTing the same body and header set to the same 20 receiver paths, N requests, in three arrangements: one
   AsyncClient with a 64-connection pool, one AsyncClient per platform with 4 connections each, and one httpx
   transport per platform with 4 connections each, driven the way the notifier's sender drives it (no client
   layers: cookie jar, auth, redirects). httpcore scans its whole pool on every request, so the first is several
   times slower than the second. The baseline is the faster client arrangement (the issue's "bare httpx client
   loop"); the ratio against the transport loop, which is faster still, is printed beside it. Bare runs happen in
   every round and once more at the end, and are averaged. Both sides use the same generator (httpx), as
   shared/docs/benchmarks.md asks. The bare loop's CPU per request is printed beside the notifier's.
4. Latency: an in-process container with the embedded notifier loop and the sequencer running (as `takedown run`
   does) and the in-process wake signal; orders are issued one at a time through the OrderService, each measured
   from the call to `issue()` until the receiver has the request (monotonic clock, shared by the processes).
Pass --py-spy DIR to attach py-spy (on PATH) to each notifier process and keep its raw stacks in DIR.
The last printed line is the JSON object described in shared/docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection as PipeEnd
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Text, cast, func, select, text  # noqa: E402

from bench.pg import ADMIN_URL, create_db, create_migrated, drop_db, report, sa_url, say  # noqa: E402
from bench.sample import ISSUER, order_fields, platform_fields  # noqa: E402
from services.bootstrap import Container, bootstrap  # noqa: E402
from services.notifier.tables import deliveries  # noqa: E402
from services.webhooks.signing import webhook_headers  # noqa: E402
from shared.settings import Settings  # noqa: E402

PREFIX = "bench_notifier_"
PLATFORMS = 20
CONCURRENCY = 64  # NotifierConfig.total: the notifier's in-flight cap and connection pool
PER_PLATFORM = 4  # NotifierConfig.per_platform
NOTIFIER_PROCESSES = os.cpu_count() or 1  # `takedown notifier`'s default: one per CPU, sharing the limits above
ISSUE_THREADS = 4
LATENCY_SAMPLES = 200
TAKEDOWN = Path(sys.executable).parent / "takedown"
TARGETS = {
    "ratio_vs_bare": ">= 0.70",
    "healthy_rate_share_with_blackhole": ">= 0.90",
    "median_issue_to_received_ms": "< 50",
}


# ------------------------------------------------------------------------------------------------- receiver

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


def receiver_main(port_out: PipeEnd, arrivals: PipeEnd) -> None:
    """The receiver process: keep-alive HTTP/1.1, 200 at once; /hole never answers; /lat reports arrivals."""
    stats: dict[str, list[float]] = {}  # path -> [count, first arrival, last arrival]

    class Http(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = bytearray()
            self.dead = False

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while not self.dead:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buf[:end]).split(b"\r\n")
                length, wid = 0, ""
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        wid = value.strip().decode()
                if len(self.buf) < end + 4 + length:
                    return
                del self.buf[: end + 4 + length]
                self.handle(lines[0].split(b" ")[1].decode(), wid)

        def handle(self, path: str, wid: str) -> None:
            now = time.monotonic()
            if path == "/_stats":
                body = json.dumps(stats).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                return
            if path == "/_reset":
                stats.clear()
                self.transport.write(OK)
                return
            entry = stats.setdefault(path, [0, now, now])
            entry[0] += 1
            entry[2] = now
            if path.startswith("/hole"):
                self.dead = True  # read, never answer
                return
            if path.startswith("/lat"):
                arrivals.send((wid, now))
            self.transport.write(OK)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


class ReceiverProcess:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        port_in, port_out = ctx.Pipe(duplex=False)
        self.arrivals, arrivals_out = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=receiver_main, args=(port_out, arrivals_out), daemon=True)
        self.proc.start()
        if not port_in.poll(20):
            raise RuntimeError("receiver did not start")
        self.port: int = port_in.recv()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, list[float]]:
        with urllib.request.urlopen(self.url("/_stats"), timeout=10) as r:
            return dict(json.loads(r.read()))

    def reset(self) -> None:
        urllib.request.urlopen(self.url("/_reset"), timeout=10).close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


# ----------------------------------------------------------------------------------------------- databases


class Databases:
    """A migrated template and fresh copies of it, all dropped at the end."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.template = f"{PREFIX}{self.run}_tpl"
        self.made: list[str] = []
        create_migrated(self.template)
        self.made.append(self.template)

    def fresh(self, label: str) -> str:
        name = f"{PREFIX}{self.run}_{label}"
        create_db(name, template=self.template)
        self.made.append(name)
        return sa_url(name)

    def drop(self) -> None:
        for name in reversed(self.made):
            drop_db(name)


def container_for(url: str) -> Container:
    return bootstrap(
        Settings(environment="test", database_url=url, embedded_workers=False, webhook_allow_list=["127.0.0.1"])
    )


def register(container: Container, urls: list[str]) -> list[tuple[str, str]]:
    """Register one platform per URL; returns (platform id, secret) in the same order."""
    made = []
    with container.db.transaction() as conn:
        for n, url in enumerate(urls):
            fields = platform_fields(f"P{n}", webhook_url=url)
            row, secret = container.registry.register_in(conn, fields, container.clock.now())
            made.append((row.id, secret))
    return made


def issue_many(container: Container, platform_ids: list[str], count: int, prefix: str) -> float:
    """Issue `count` orders round-robin over the platforms from a few threads; returns orders/s."""

    def one(n: int) -> None:
        container.orders.issue(ISSUER, order_fields(platform_ids[n % len(platform_ids)], f"{prefix}-{n}"), None)

    started = time.monotonic()
    with ThreadPoolExecutor(ISSUE_THREADS) as pool:
        list(pool.map(one, range(count)))
    return count / (time.monotonic() - started)


def delivered(container: Container, platform_ids: list[str] | None = None) -> tuple[int, float | None]:
    """How many deliveries are recorded as delivered, and when the last was (on this process's monotonic clock)."""
    query = select(func.count(), func.max(deliveries.c.delivered_at)).where(deliveries.c.state == "delivered")
    if platform_ids is not None:
        query = query.where(deliveries.c.platform_id.in_(platform_ids))
    with container.db.read() as conn:
        count, last = conn.execute(query).one()
    # delivered_at is the notifier's wall clock at recording; both clocks are the same machine's.
    return int(count), None if last is None else last.timestamp() - (time.time() - time.monotonic())


def cpu_ticks(pids: list[int]) -> int:
    """CPU time (user + system, in clock ticks) used so far by these processes and all their descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    wanted = set(pids)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        grew = bool(children)
        wanted |= children
    return sum(ticks.get(pid, 0) for pid in wanted)


def backend_pids(container: Container) -> list[int]:
    """The PostgreSQL server processes serving this bench database (the notifier's connections among them)."""
    with container.db.read() as conn:
        return list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            ).scalars()
        )


# ---------------------------------------------------------------------------------------- notifier process


LOG_DIR = Path(tempfile.gettempdir()) / "bench_notifier_logs"  # each notifier run's log lines, <run>.log
PROFILE_DIR: list[Path] = []  # set by --py-spy: attach py-spy to every notifier process


def start_notifier(
    db_url: str, label: str, processes: int | None = None
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes] | None]:
    """Start `takedown notifier [--processes N]` on `db_url`, and (with --py-spy) a profiler attached to it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TAKEDOWN_")},
        "TAKEDOWN_DATABASE_URL": db_url,
        "TAKEDOWN_WEBHOOK_ALLOW_LIST": '["127.0.0.1"]',
        "TAKEDOWN_EMBEDDED_WORKERS": "false",
        "TAKEDOWN_ENVIRONMENT": "test",
        "TAKEDOWN_LOG_JSON": "true",  # as docker-compose.yml runs it
    }
    args = [str(TAKEDOWN), "notifier"] + ([] if processes is None else ["--processes", str(processes)])
    # A session of its own, so that a kill reaches the supervisor's worker processes too.
    # Its log lines go to a file, as a deployment's go to its log collector (and not between the bench's lines).
    LOG_DIR.mkdir(exist_ok=True)
    with open(LOG_DIR / f"{label}.log", "wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, stderr=log)
    if not PROFILE_DIR:
        return proc, None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = PROFILE_DIR[0] / f"{label}.txt"
    cmd = [spy, "record", "--gil", "--subprocesses", "--pid", str(proc.pid), "-f", "raw", "-r", "200", "-o", str(out)]
    return proc, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_notifier(proc: subprocess.Popen[bytes], spy: subprocess.Popen[bytes] | None, grace: float = 20.0) -> None:
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(30)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def notifier_run(
    dbs: Databases, receiver: ReceiverProcess, label: str, orders: int, blackhole: bool, processes: int | None = None
) -> dict[str, float]:
    """One throughput run; returns the rate of all deliveries and of the 19 platforms that are healthy in both."""
    url = dbs.fresh(label)
    container = container_for(url)
    try:
        paths = [f"/p{n}" for n in range(PLATFORMS)]
        if blackhole:
            paths[-1] = "/hole"
        platforms = register(container, [receiver.url(p) for p in paths])
        ids = [p for p, _ in platforms]
        healthy = ids[:-1]
        issue_rate = issue_many(container, ids, orders, label)
        receiver.reset()
        healthy_total = sum(1 for n in range(orders) if n % PLATFORMS != PLATFORMS - 1)
        proc, spy = start_notifier(url, label, processes)
        try:
            deadline = time.monotonic() + 600
            target, watch = (healthy_total, healthy) if blackhole else (orders, None)
            start: tuple[int, int, int] | None = None  # deliveries, notifier ticks, PostgreSQL ticks
            count, last = 0, None
            while count < target:
                if proc.poll() is not None:
                    raise RuntimeError(f"notifier exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("deliveries did not finish in 600 s")
                time.sleep(0.1)
                count, last = delivered(container, watch)
                if start is None and count:
                    # CPU is counted from the first recorded delivery on: start-up (imports) is not delivery work.
                    start = (count, cpu_ticks([proc.pid]), cpu_ticks(backend_pids(container)))
            assert start is not None and last is not None
            notifier_cpu = cpu_ticks([proc.pid]) - start[1]
            postgres_cpu = cpu_ticks(backend_pids(container)) - start[2]
            stats = receiver.stats()
        finally:
            # With a black-holed platform the in-flight requests would hold a SIGTERM for the whole timeout.
            stop_notifier(proc, spy, grace=2.0 if blackhole else 20.0)
        first = min(s[1] for s in stats.values())
        elapsed = last - first
        counted = healthy_total if blackhole else orders
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        result = {
            "issue_per_s": issue_rate,
            "elapsed_s": elapsed,
            "deliveries_per_s": counted / elapsed,
            "healthy_per_s": healthy_total / elapsed,
            "notifier_cpu_ms_per_delivery": notifier_cpu * tick_ms / (count - start[0]),
            "postgres_cpu_ms_per_delivery": postgres_cpu * tick_ms / (count - start[0]),
        }
        if blackhole:
            result["blackholed_requests"] = sum(s[0] for p, s in stats.items() if p.startswith("/hole"))
        return result
    finally:
        container.close()


# -------------------------------------------------------------------------------------------- bare loop


ARRANGEMENTS = {
    "single": f"one AsyncClient, pool of {CONCURRENCY}",
    "per_platform": f"one AsyncClient per platform, pool of {PER_PLATFORM} each",
    "transport": f"one httpx transport per platform (as the notifier sends), pool of {PER_PLATFORM} each",
}


def bare_main(
    urls: list[str], body: bytes, headers: dict[str, str], count: int, arrangement: str, out: PipeEnd
) -> None:
    """A bare httpx loop: CONCURRENCY tasks POST `body` round-robin to `urls` until `count` requests are done.

    Arrangements (ARRANGEMENTS): one AsyncClient with a pool of CONCURRENCY connections; one client per URL with
    PER_PLATFORM connections each (the same concurrency, arranged so httpcore's pool stays small); or one httpx
    transport per URL, PER_PLATFORM connections each, driven as the notifier's sender drives it (no client layers).
    """

    async def run() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=PER_PLATFORM, max_keepalive_connections=PER_PLATFORM)
        closers: list[Any] = []
        if arrangement == "transport":
            pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in urls]
            targets = [httpx.URL(url) for url in urls]
            closers = pools

            async def post(n: int) -> int:
                request = httpx.Request("POST", targets[n % len(urls)], headers=headers, content=body)
                response = await pools[n % len(urls)].handle_async_request(request)
                async for _ in response.aiter_raw():
                    pass
                await response.aclose()
                return response.status_code

        else:
            if arrangement == "per_platform":
                clients = [httpx.AsyncClient(trust_env=False, limits=limits) for _ in urls]
            else:
                wide = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
                clients = [httpx.AsyncClient(trust_env=False, limits=wide)] * len(urls)
            closers = list(set(clients))

            async def post(n: int) -> int:
                response = await clients[n % len(urls)].post(urls[n % len(urls)], content=body, headers=headers)
                return response.status_code

        counter = iter(range(count))
        failures = 0

        async def worker() -> None:
            nonlocal failures
            for n in counter:
                failures += await post(n) != 200

        try:
            # Warm the pools (connections made) outside the timed window.
            await asyncio.gather(*(post(n) for n in range(CONCURRENCY)))
            started, cpu = time.monotonic(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        finally:
            for closer in closers:
                await closer.aclose()
        if failures:
            raise RuntimeError(f"{failures} bare requests failed")
        return elapsed, cpu

    elapsed, cpu = asyncio.run(run())
    out.send((count / elapsed, 1000 * cpu / count))


def bare_run(
    receiver: ReceiverProcess, body: bytes, headers: dict[str, str], count: int, arrangement: str
) -> tuple[float, float]:
    """Run the bare loop in a process of its own; returns (requests/s, CPU ms per request)."""
    ctx = mp.get_context("spawn")
    result_in, result_out = ctx.Pipe(duplex=False)
    urls = [receiver.url(f"/p{n}") for n in range(PLATFORMS)]
    proc = ctx.Process(target=bare_main, args=(urls, body, headers, count, arrangement, result_out))
    proc.start()
    if not result_in.poll(600):
        proc.kill()
        raise RuntimeError("bare loop did not finish")
    rate, cpu_ms = result_in.recv()
    proc.join(10)
    return rate, cpu_ms


def sample_request(dbs: Databases, receiver: ReceiverProcess) -> tuple[bytes, dict[str, str]]:
    """A real payload and header set as the notifier would send them (one order issued into a scratch database)."""
    container = container_for(dbs.fresh("sample"))
    try:
        [(platform_id, secret)] = register(container, [receiver.url("/p0")])
        container.orders.issue(ISSUER, order_fields(platform_id, "SAMPLE-1"), None)
        with container.db.read() as conn:
            row = conn.execute(select(deliveries.c.id, cast(deliveries.c.payload, Text).label("body"))).one()
    finally:
        container.close()
    body = row.body.encode()  # as the notifier sends it: the payload's stored text
    return body, dict(webhook_headers([secret], row.id, int(time.time()), body))


def latency_run(dbs: Databases, receiver: ReceiverProcess, samples: int) -> tuple[list[float], list[float]]:
    """Issue-to-received milliseconds, one order at a time, embedded notifier + sequencer with in-process wake."""
    container = container_for(dbs.fresh("lat"))
    [(platform_id, _)] = register(container, [receiver.url("/lat")])
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=loop.run_until_complete, args=(container.notifier.run(stop),), daemon=True)
    container.sequencer.start()
    runner.start()
    latencies: list[float] = []
    issue_ms: list[float] = []
    try:
        time.sleep(0.5)
        for n in range(samples + 10):
            started = time.monotonic()
            container.orders.issue(ISSUER, order_fields(platform_id, f"L-{n}"), None)
            issued = time.monotonic()
            if not receiver.arrivals.poll(10):
                raise RuntimeError("the receiver never got the webhook")
            _wid, arrived = receiver.arrivals.recv()
            if n >= 10:  # the first few warm the pool, the caches and the connections
                latencies.append((arrived - started) * 1000)
                issue_ms.append((issued - started) * 1000)
            time.sleep(0.05)  # let the attempt be recorded: each order starts on an idle machine
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(30)
        container.close()
    return latencies, issue_ms


# ------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=4000, help="orders per throughput run (default 4000)")
    parser.add_argument("--latency-samples", type=int, default=LATENCY_SAMPLES)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of runs, averaged (default 3)")
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile the notifier processes with py-spy (on PATH or beside python), raw stacks into DIR/<run>.txt",
    )
    args = parser.parse_args()
    if args.py_spy:
        PROFILE_DIR.append(Path(args.py_spy))
        PROFILE_DIR[0].mkdir(parents=True, exist_ok=True)
    orders = args.orders

    say(f"notifier bench: PostgreSQL {ADMIN_URL.rsplit('@', 1)[-1]}, {os.cpu_count()} CPUs, {orders} orders per run")
    say(f"load generator: httpx {httpx.__version__} for both the notifier and the bare baseline (same generator)")
    say(f"notifier log lines (JSON, as deployed): {LOG_DIR}/<run>.log")
    say(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    dbs = Databases()
    receiver = ReceiverProcess()
    figures: dict[str, float] = {}
    try:
        say(f"receiver: asyncio keep-alive HTTP/1.1 server in its own process on port {receiver.port}")
        body, headers = sample_request(dbs, receiver)
        bare: dict[str, list[tuple[float, float]]] = {kind: [] for kind in ARRANGEMENTS}

        def bare_pair(when: str) -> None:
            for kind, arrangement in ARRANGEMENTS.items():
                rate, cpu_ms = bare_run(receiver, body, headers, orders, kind)
                bare[kind].append((rate, cpu_ms))
                say(
                    f"bare httpx loop, {CONCURRENCY} concurrent, {arrangement}, {when}: {rate:.0f} requests/s "
                    f"({cpu_ms:.2f} ms CPU per request)"
                )

        def show(what: str, run: dict[str, float]) -> None:
            say(
                f"{what}: {run['deliveries_per_s']:.0f} deliveries/s ({run['elapsed_s']:.2f} s; CPU per delivery: "
                f"notifier {run['notifier_cpu_ms_per_delivery']:.2f} ms, PostgreSQL "
                f"{run['postgres_cpu_ms_per_delivery']:.2f} ms; issued beforehand at {run['issue_per_s']:.0f}/s)"
            )

        runs: dict[str, list[dict[str, float]]] = {"healthy": [], "one_process": [], "blackhole": []}
        for rnd in range(1, args.rounds + 1):
            bare_pair(f"round {rnd}")
            healthy = notifier_run(dbs, receiver, f"healthy{rnd}", orders, blackhole=False)
            runs["healthy"].append(healthy)
            show(f"notifier ({NOTIFIER_PROCESSES} processes), 20 healthy platforms, round {rnd}", healthy)
            one = notifier_run(dbs, receiver, f"one{rnd}", orders, blackhole=False, processes=1)
            runs["one_process"].append(one)
            show(f"notifier (1 process), 20 healthy platforms, round {rnd}", one)
            holed = notifier_run(dbs, receiver, f"blackhole{rnd}", orders, blackhole=True)
            runs["blackhole"].append(holed)
            say(
                f"notifier ({NOTIFIER_PROCESSES} processes), 19 healthy + 1 black-holed, round {rnd}: healthy "
                f"platforms {holed['healthy_per_s']:.0f} deliveries/s ({holed['blackholed_requests']:.0f} requests "
                f"stuck in the black hole) vs {healthy['healthy_per_s']:.0f}/s for the same 19 in the healthy run"
            )
        bare_pair("after")
        healthy = {k: statistics.mean(r[k] for r in runs["healthy"]) for k in runs["healthy"][0]}
        one = {k: statistics.mean(r[k] for r in runs["one_process"]) for k in runs["one_process"][0]}
        holed = {k: statistics.mean(r[k] for r in runs["blackhole"]) for k in runs["blackhole"][0]}
        rate = {kind: statistics.mean(r for r, _ in runs_) for kind, runs_ in bare.items()}
        cpu = {kind: statistics.mean(c for _, c in runs_) for kind, runs_ in bare.items()}
        single, per_platform, transport = rate["single"], rate["per_platform"], rate["transport"]
        # The issue's baseline is a bare httpx *client* loop: the faster of the two client arrangements. The
        # transport loop (the notifier's own way of sending, without the client's layers) is printed beside it.
        client_kind = max(("single", "per_platform"), key=rate.__getitem__)
        baseline, baseline_cpu = rate[client_kind], cpu[client_kind]
        say(
            f"means over the rounds: notifier {healthy['deliveries_per_s']:.0f} deliveries/s with "
            f"{NOTIFIER_PROCESSES} processes, {one['deliveries_per_s']:.0f}/s with 1; healthy platforms "
            f"{holed['healthy_per_s']:.0f}/s with the black hole vs {healthy['healthy_per_s']:.0f}/s without"
        )
        say(
            f"baseline = the faster bare client arrangement (mean of its runs): {baseline:.0f} requests/s, "
            f"{baseline_cpu:.2f} ms CPU per request (single client {single:.0f}/s, per-platform clients "
            f"{per_platform:.0f}/s); bare transports {transport:.0f}/s, {cpu['transport']:.2f} ms CPU per request"
        )
        latencies, issue_ms = latency_run(dbs, receiver, args.latency_samples)
        median = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[-1]
        say(
            f"issue-to-received latency ({len(latencies)} orders, one at a time, embedded notifier + sequencer): "
            f"median {median:.1f} ms, p95 {p95:.1f} ms, max {max(latencies):.1f} ms "
            f"(of which the issue() call itself: median {statistics.median(issue_ms):.1f} ms)"
        )
        figures = {
            "deliveries_per_s": round(healthy["deliveries_per_s"], 1),
            "notifier_processes": NOTIFIER_PROCESSES,
            "baseline_per_s": round(baseline, 1),
            "ratio_vs_bare": round(healthy["deliveries_per_s"] / baseline, 3),
            "deliveries_per_s_one_process": round(one["deliveries_per_s"], 1),
            "ratio_one_process_vs_bare": round(one["deliveries_per_s"] / baseline, 3),
            "notifier_cpu_ms_per_delivery": round(healthy["notifier_cpu_ms_per_delivery"], 3),
            "postgres_cpu_ms_per_delivery": round(healthy["postgres_cpu_ms_per_delivery"], 3),
            "bare_cpu_ms_per_request": round(baseline_cpu, 3),
            "bare_single_client_per_s": round(single, 1),
            "bare_per_platform_clients_per_s": round(per_platform, 1),
            "bare_transports_per_s": round(transport, 1),
            "bare_transports_cpu_ms_per_request": round(cpu["transport"], 3),
            "ratio_vs_bare_transports": round(healthy["deliveries_per_s"] / transport, 3),
            "ratio_vs_bare_single_client": round(healthy["deliveries_per_s"] / single, 3),
            "healthy_per_s_all_healthy": round(healthy["healthy_per_s"], 1),
            "healthy_per_s_with_blackhole": round(holed["healthy_per_s"], 1),
            "healthy_rate_share_with_blackhole": round(holed["healthy_per_s"] / healthy["healthy_per_s"], 3),
            "median_issue_to_received_ms": round(median, 2),
            "p95_issue_to_received_ms": round(p95, 2),
            "median_issue_call_ms": round(statistics.median(issue_ms), 2),
        }
        say(
            f"ratio vs bare: {figures['ratio_vs_bare']:.2f} with {NOTIFIER_PROCESSES} notifier processes, "
            f"{figures['ratio_one_process_vs_bare']:.2f} with 1 (vs the single-client loop: "
            f"{figures['ratio_vs_bare_single_client']:.2f}, vs bare transports: "
            f"{figures['ratio_vs_bare_transports']:.2f}); healthy share with a black hole: "
            f"{figures['healthy_rate_share_with_blackhole']:.2f}"
        )
        say(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        receiver.stop()
        dbs.drop()
    met = (
        figures["ratio_vs_bare"] >= 0.70
        and figures["healthy_rate_share_with_blackhole"] >= 0.90
        and figures["median_issue_to_received_ms"] < 50
    )
    report("notifier", figures, TARGETS, met, digits=None)


if __name__ == "__main__":
    main()
