"""SLA dashboard and sweep cost on PostgreSQL at 10,000 and 1,000,000 stored orders (issue 14).

Run: `.venv/bin/python bench/sla.py [--quick] [--small N] [--big N] [--rounds R]` (PostgreSQL at 127.0.0.1:5432,
user postgres; override with BENCH_PG_URL=postgresql://user@host:port/admin_db). It creates databases named
bench_sla_* (one migrated template, one copy per size) and drops them. `--quick`: 10,000 and 100,000 orders.

For each size:
1. Fill. 20 platforms are registered through `Registry.register_in`; `sla_orders` gets N synthetic rows by COPY
   (a realistic mix: mostly met, then met_late, withdrawn, declined, on_track, breached, at_risk, contested,
   awaiting_delivery; 9 categories, 3 authorities), each row built the way `projection.row_of` builds one:
   deadline = notified_at + the policy's duration, at_risk_at = `sla.at_risk_from`, running statuses from
   `sla.clock_status` at the bench's NOW, met/met_late judged on the recorded answer, next_change_at from the
   clock's own `next_status_change`. `sla_counts` and `sla_answer_histogram` are filled from those rows by
   INSERT ... SELECT ... GROUP BY over the projection's dimensions (`groups()`) with `bucket()`'s formula in SQL,
   and checked equal to counters computed in Python with `groups()` and `bucket()` while generating; at the small
   size also equal to what `SlaProjection.replace` itself writes from empty (in a rolled-back transaction). The
   order view `orders` gets one row per SLA row (INSERT ... SELECT; small JSON document; next_due_at NULL for
   closed orders and in the future for open ones). Then VACUUM ANALYZE. Both sizes are filled first (then a
   CHECKPOINT), and every round below runs on both, alternating which goes first, so drift on this shared
   machine falls on both sides of a growth ratio.
2. Reads, each call in its own read transaction (`Database.read`), after an untimed warm-up (a fifth of the
   calls, at most 20), --rounds rounds; p50/p95 in ms, the best round (lowest p95) kept:
   - `queries.summary` as an auditor, unfiltered and grouped by platform (200 calls a round);
   - `queries.orders(status="breached", limit=50)`, the first page (100 calls a round);
   - the baseline: one plain `GROUP BY` over `sla_orders` answering the same summary, per group: the count of each
     status (percent met follows from them) AND the exact median and p90 of answer_seconds (`percentile_cont`),
     i.e. it includes the percentiles; run with `SET LOCAL jit = off` (at 1M rows here JIT made the per-platform
     GROUP BY slower, ~1.3 s vs ~0.8 s, and the unfiltered one about the same: off is the stricter baseline);
     10 calls a round at 500,000 orders or more, 50 below. A counts-only GROUP BY is printed beside it.
3. The sweep: 100 REAL orders issued through `OrderService.issue` with the clock 2 h before NOW (never
   notified, so escalation level 1 falls due 1 h after issue), then one timed `Sweep.run_once` with the clock at
   NOW; checked afterwards: exactly 100 new escalations, all level 1, on those orders. One untimed warm-up round,
   then --rounds timed rounds; best and median printed, best kept.
Targets (issue 14): at the big size each figure is at most 1.5x its own figure at the small size, and the
summary's p95 is at most a tenth of the plain GROUP BY's at the big size (both groupings; at the small size the
ratio is printed for information). The last printed line is the JSON object of shared/docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import Connection, event, func, select, text  # noqa: E402

from bench.pg import ADMIN_URL, admin, conninfo, create_db, create_migrated, drop_db, report, sa_url, say  # noqa: E402
from bench.sample import ISSUER, order_fields, platform_fields  # noqa: E402
from services.bootstrap import Container, bootstrap  # noqa: E402
from services.orders import sla_clock as sla  # noqa: E402
from services.sla import queries  # noqa: E402
from services.sla.projection import BUCKET_GROWTH, bucket, groups  # noqa: E402
from services.sla.tables import escalations, sla_answer_histogram, sla_counts  # noqa: E402
from shared.auth import Principal  # noqa: E402
from shared.clock import FrozenClock  # noqa: E402
from shared.events import CATEGORIES  # noqa: E402
from shared.settings import Settings  # noqa: E402

PREFIX = "bench_sla_"
PLATFORMS = 20
AUTHORITIES = ("mci", "mvd", "gp")  # mci is ISSUER's: the real orders of the sweep rounds
DUE = 100  # orders due at each sweep
SUMMARY_CALLS, PAGE_CALLS, WARMUP_CALLS = 200, 100, 20
AUDITOR = Principal(key_id="bench-auditor", role="auditor")
# The status mix of the stored orders (shares).
MIX: dict[str, float] = {
    "met": 0.70,
    "met_late": 0.07,
    "withdrawn": 0.04,
    "declined": 0.04,
    "on_track": 0.04,
    "breached": 0.03,
    "at_risk": 0.02,
    "contested": 0.03,
    "awaiting_delivery": 0.03,
}
ORDER_STATUS = {  # the order view's lifecycle status for each SLA status
    "met": "closed",
    "met_late": "closed",
    "withdrawn": "withdrawn",
    "declined": "declined",
    "on_track": "acknowledged",
    "breached": "acknowledged",
    "at_risk": "delivered",
    "contested": "contested",
    "awaiting_delivery": "issued",
}
SLA_COLUMNS = (
    "order_id", "platform_id", "authority_id", "category", "issued_at", "notified_at", "deadline", "at_risk_at",
    "answered_at", "answer_seconds", "clock_stopped_at", "status", "next_change_at",
)  # fmt: skip
TARGETS = {
    "growth_each_figure": "<= 1.5 (figure at big / figure at small; unfiltered summary, breached page, sweep)",
    "summary_p95_vs_group_by_p95": "<= 0.1 (at the big size, unfiltered and by platform)",
}


# ----------------------------------------------------------------------------------------------------- plumbing


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ----------------------------------------------------------------------------------------------------- the rows


def synthetic_rows(
    n: int, platform_ids: list[str], policy: sla.SlaPolicy, now: datetime, seed: int
) -> Iterator[dict[str, Any]]:
    """N SLA rows in the status mix, each consistent the way `projection.row_of` makes one (see the docstring)."""
    rnd = random.Random(seed)
    statuses, weights = list(MIX), list(MIX.values())
    minute, day = timedelta(minutes=1), timedelta(days=1)
    for i in range(n):
        intended = rnd.choices(statuses, weights)[0]
        category = CATEGORIES[min(int(rnd.expovariate(0.45)), len(CATEGORIES) - 1)]  # a few categories dominate
        platform = platform_ids[min(int(rnd.paretovariate(1.2)) - 1, len(platform_ids) - 1)] if i % 3 else None
        platform = platform or rnd.choice(platform_ids)
        authority = AUTHORITIES[0 if rnd.random() < 0.6 else rnd.randrange(1, len(AUTHORITIES))]
        duration = policy.duration(category)
        notice = rnd.uniform(5, 1800)  # seconds from issue to notification
        notified: datetime | None
        answered: datetime | None = None
        if intended in ("met", "met_late", "withdrawn", "declined"):
            notified = now - rnd.uniform(2, 365) * day
            if intended in ("met", "declined"):
                answered = notified + min(timedelta(seconds=rnd.lognormvariate(math.log(3 * 3600), 1.0)), duration)
            elif intended == "met_late":
                answered = notified + duration + timedelta(seconds=rnd.lognormvariate(math.log(4 * 3600), 1.2))
        elif intended == "on_track":
            notified = now - duration * rnd.uniform(0.0, 0.74)
        elif intended == "at_risk":
            notified = now - duration * rnd.uniform(0.76, 0.99)
        elif intended == "breached":
            notified = now - duration - rnd.uniform(1, 10 * 24 * 60) * minute
        elif intended == "contested":
            notified = now - duration * rnd.uniform(0.1, 5)
        else:  # awaiting_delivery
            notified = None
            notice = 0
        issued = (notified or now - rnd.uniform(1, 50) * minute) - timedelta(seconds=notice)
        if intended == "withdrawn" and rnd.random() < 0.3:
            notified = None  # withdrawn before it reached the platform
        due = notified + duration if notified is not None else None
        at_risk_at = sla.at_risk_from(due, category, policy) if due is not None else None
        if intended in ("on_track", "at_risk", "breached"):
            assert due is not None
            status: str = sla.clock_status(due, category, policy, now)
        elif intended in ("met", "met_late"):
            assert due is not None and answered is not None
            status = "met" if answered <= due else "met_late"
        else:
            status = intended
        assert status == intended, (status, intended)
        row: dict[str, Any] = {
            "order_id": f"00000000-0000-7000-8000-{i:012x}",
            "platform_id": platform,
            "authority_id": authority,
            "category": category,
            "issued_at": issued,
            "notified_at": notified,
            "deadline": due,
            "at_risk_at": at_risk_at,
            "answered_at": answered,
            "answer_seconds": (answered - notified).total_seconds() if answered and notified else None,
            "status": status,
        }
        # A contest stopped the clock somewhere between notification and now (halfway: no draw, same mix).
        contest = notified + (now - notified) / 2 if intended == "contested" and notified is not None else None
        row["clock_stopped_at"] = contest or answered
        row["next_change_at"] = sla.next_status_change(status, due, category, policy)
        yield row


def fill(db_name: str, n: int, platform_ids: list[str], policy: sla.SlaPolicy, now: datetime) -> dict[str, Any]:
    """COPY the SLA rows, build counters and histogram by GROUP BY, the order view by INSERT ... SELECT."""
    expected_counts: Counter[tuple[str, str, str]] = Counter()
    expected_hist: Counter[tuple[str, str, int]] = Counter()
    mix: Counter[str] = Counter()
    t0 = time.perf_counter()
    with psycopg.connect(**conninfo(db_name)) as conn:
        conn.execute("SET synchronous_commit = off")
        with conn.cursor() as cur, cur.copy(f"COPY sla_orders ({', '.join(SLA_COLUMNS)}) FROM STDIN") as copy:
            for row in synthetic_rows(n, platform_ids, policy, now, seed=n):
                copy.write_row(tuple(row[c] for c in SLA_COLUMNS))
                mix[row["status"]] += 1
                for dimension, key in groups(row):
                    expected_counts[(dimension, key, row["status"])] += 1
                    if row["answer_seconds"] is not None:
                        expected_hist[(dimension, key, bucket(row["answer_seconds"]))] += 1
        t_copy = time.perf_counter()
        # The projection's dimensions (`groups()`), and `bucket()` in SQL: floor(ln(max(s, 1)) / ln(1.05)), >= 0.
        cells = {
            "all": "''",
            "platform": "platform_id",
            "category": "category",
            "authority": "authority_id",
            "authority|platform": "authority_id || '|' || platform_id",
            "authority|category": "authority_id || '|' || category",
        }
        b = f"greatest(0, floor(ln(greatest(answer_seconds, 1.0)) / ln({BUCKET_GROWTH})))::int"
        for dimension, key in cells.items():
            conn.execute(
                f"INSERT INTO sla_counts (dimension, key, status, n) "
                f"SELECT '{dimension}', {key}, status, count(*) FROM sla_orders GROUP BY 2, 3"
            )
            conn.execute(
                f"INSERT INTO sla_answer_histogram (dimension, key, bucket, n) SELECT '{dimension}', k, b, count(*) "
                f"FROM (SELECT {key} AS k, {b} AS b FROM sla_orders WHERE answer_seconds IS NOT NULL) s GROUP BY 2, 3"
            )
        t_counts = time.perf_counter()
        order_status = " ".join(f"WHEN '{s}' THEN '{o}'" for s, o in ORDER_STATUS.items())
        conn.execute(
            f"""
            INSERT INTO orders (id, issuer_reference, authority_id, platform_id, category, status, issued_at,
                                notified_at, deadline, next_due_at, closed_at, withdrawn_at, version, request_hash,
                                document)
            SELECT order_id, 'SYN-' || order_id, authority_id, platform_id, category,
                   CASE status {order_status} END, issued_at, notified_at, deadline,
                   CASE WHEN status IN ('met', 'met_late', 'withdrawn') THEN NULL
                        ELSE %(now)s::timestamptz + (1 + abs(hashtext(order_id)) %% 4320) * interval '1 minute' END,
                   answered_at, CASE WHEN status = 'withdrawn' THEN issued_at + interval '3 hours' END,
                   4, '', json_build_object('id', order_id, 'platform_id', platform_id, 'category', category,
                                            'sla_status', status, 'deadline', deadline)
            FROM sla_orders
            """,
            {"now": now},
        )
        conn.commit()
        t_view = time.perf_counter()
    with psycopg.connect(**conninfo(db_name), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) sla_orders, sla_counts, sla_answer_histogram, orders")
        stored_counts = Counter(
            {(d, k, s): int(c) for d, k, s, c in conn.execute("SELECT dimension, key, status, n FROM sla_counts")}
        )
        stored_hist = Counter(
            {(d, k, int(b)): int(c) for d, k, b, c in conn.execute("SELECT * FROM sla_answer_histogram")}
        )
    t_done = time.perf_counter()
    if stored_counts != expected_counts or stored_hist != expected_hist:
        raise RuntimeError("the GROUP BY counters differ from projection.groups()/bucket() over the same rows")
    say(
        f"  filled {n:,} SLA rows in {t_done - t0:.1f} s (COPY {t_copy - t0:.1f} s, counters {t_counts - t_copy:.1f} s,"
        f" order view {t_view - t_counts:.1f} s, VACUUM ANALYZE {t_done - t_view:.1f} s); counters == groups()/bucket()"
    )
    say("  mix: " + ", ".join(f"{s} {100 * mix[s] / n:.1f}%" for s in MIX))
    return {"fill_s": t_done - t0}


def check_against_projection(container: Container) -> None:
    """`SlaProjection.replace` of every stored row from empty writes exactly the bulk-built counters (rolled back)."""
    from services.sla.tables import sla_orders

    with container.db.engine.connect() as conn, conn.begin() as tx:
        rows = {r.order_id: dict(r._mapping) for r in conn.execute(select(sla_orders))}
        before_counts = sorted(tuple(r) for r in conn.execute(select(sla_counts)))
        before_hist = sorted(tuple(r) for r in conn.execute(select(sla_answer_histogram)))
        for table in (sla_orders, sla_counts, sla_answer_histogram):
            conn.execute(table.delete())
        container.sla.replace(conn, rows)
        after_counts = sorted(tuple(r) for r in conn.execute(select(sla_counts)))
        after_hist = sorted(tuple(r) for r in conn.execute(select(sla_answer_histogram)))
        tx.rollback()
    if before_counts != after_counts or before_hist != after_hist:
        raise RuntimeError("SlaProjection.replace writes other counters than the bulk fill")
    say(f"  SlaProjection.replace of all {len(rows):,} rows from empty writes the same counters and histogram")


# ----------------------------------------------------------------------------------------------------- timing


def timed(container: Container, call: Callable[[Connection], Any], calls: int) -> list[float]:
    """Milliseconds of `calls` calls, each in its own read transaction, after an untimed warm-up."""
    for _ in range(min(WARMUP_CALLS, max(1, calls // 5))):
        with container.db.read() as conn:
            call(conn)
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        with container.db.read() as conn:
            call(conn)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary_call(group_by: queries.GroupBy | None) -> Callable[[Connection], Any]:
    def call(conn: Connection) -> list[dict[str, Any]]:
        return queries.summary(conn, AUDITOR, group_by)

    return call


def baseline_sql(group: str | None, with_percentiles: bool) -> str:
    key = f"{group} AS key" if group else "'' AS key"
    by = " GROUP BY 1" if group else ""
    if not with_percentiles:
        return f"SELECT {key}, status, count(*) FROM sla_orders GROUP BY 1, 2"
    per_status = ", ".join(f"count(*) FILTER (WHERE status = '{s}')" for s in sla.SLA_STATUSES)
    return (
        f"SELECT {key}, {per_status}, count(answer_seconds),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_seconds),"
        f" percentile_cont(0.9) WITHIN GROUP (ORDER BY answer_seconds) FROM sla_orders{by}"
    )


def baseline_call(sql_text: str, with_percentiles: bool) -> Callable[[Connection], Any]:
    statement = text(sql_text)

    def call(conn: Connection) -> list[dict[str, Any]]:
        conn.execute(text("SET LOCAL jit = off"))
        out = []
        for r in conn.execute(statement):
            if with_percentiles:
                counts = dict(zip(sla.SLA_STATUSES, r[1 : 1 + len(sla.SLA_STATUSES)], strict=True))
                decided = sum(counts[s] for s in queries.DECIDED)
                out.append({"key": r[0], "counts": counts, "percent_met": 100 * counts["met"] / decided if decided else None,
                            "median": r[-2], "p90": r[-1]})  # fmt: skip
            else:
                out.append({"key": r[0], "status": r[1], "n": r[2]})
        return out

    return call


def page_plan(container: Container) -> str:
    """The plan PostgreSQL picks for the first page of breached orders (the statement `queries.orders` sends)."""
    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        captured.append((statement, parameters))

    event.listen(container.db.engine, "before_cursor_execute", grab)
    try:
        with container.db.read() as conn:
            queries.orders(conn, AUDITOR, status="breached", limit=50)
    finally:
        event.remove(container.db.engine, "before_cursor_execute", grab)
    statement, parameters = captured[-1]
    raw = container.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (ANALYZE, COSTS off, TIMING off) " + statement, parameters)
        lines = [str(r[0]) for r in cur.fetchall()]
    finally:
        raw.rollback()
        raw.close()
    return " | ".join(line.strip() for line in lines if "Planning" not in line and "Execution" not in line)


def sweep_once(store: Store, now: datetime, round_no: int) -> float:
    """Issue DUE real orders 2 h before NOW, then time one `Sweep.run_once` at NOW; check DUE new level-1 rows."""
    container, clock = store.container, store.clock
    clock.set(now - timedelta(hours=2))
    ids = set()
    for k in range(DUE):
        fields = order_fields(store.platform_ids[k % len(store.platform_ids)], f"BENCH-{round_no}-{k}")
        ids.add(container.orders.issue(ISSUER, fields, None)[0]["id"])
    with container.db.read() as conn:
        before = conn.execute(select(func.count()).select_from(escalations)).scalar_one()
    clock.set(now)
    t = time.perf_counter()
    looked_at = container.sweep.run_once()
    elapsed = (time.perf_counter() - t) * 1000
    with container.db.read() as conn:
        new = conn.execute(
            select(escalations.c.order_id, escalations.c.level).where(escalations.c.order_id.in_(ids))
        ).all()
        after = conn.execute(select(func.count()).select_from(escalations)).scalar_one()
    if after - before != DUE or len(new) != DUE or {r.level for r in new} != {sla.NOT_NOTIFIED} or looked_at != DUE:
        raise RuntimeError(f"sweep round {round_no}: {after - before} escalations, {looked_at} orders looked at")
    return elapsed


# ----------------------------------------------------------------------------------------------------- the stores


@dataclass
class Store:
    """One filled database and a service container over it."""

    n: int
    db_name: str
    container: Container
    clock: FrozenClock
    platform_ids: list[str]


def setup_store(template: str, n: int, now: datetime, cross_check: bool) -> Store:
    db_name = f"{PREFIX}{n}"
    create_db(db_name, template)
    clock = FrozenClock(now)
    container = bootstrap(
        Settings(environment="test", database_url=sa_url(db_name), embedded_workers=False), clock=clock
    )
    say(f"\n{n:,} orders stored")
    with container.db.transaction() as conn:
        platform_ids = [
            container.registry.register_in(conn, platform_fields(f"Platform {k:02d}"), now - timedelta(days=400))[0].id
            for k in range(PLATFORMS)
        ]
    fill(db_name, n, platform_ids, container.policy, now)
    if cross_check:
        check_against_projection(container)
    with container.db.read() as conn:
        ours = queries.summary(conn, AUDITOR, None)[0]
        plain = baseline_call(baseline_sql(None, True), True)(conn)[0]
    say(
        f"  same answer: total {ours['total']:,}, percent met {ours['percent_met']} vs {plain['percent_met']:.2f};"
        f" median {ours['median_answer_seconds']} s vs exact {plain['median']:.1f} s, p90"
        f" {ours['p90_answer_seconds']} s vs exact {plain['p90']:.1f} s (histogram buckets {round((BUCKET_GROWTH - 1) * 100)}% wide)"
    )
    if ours["total"] != n or ours["counts"] != plain["counts"]:
        raise RuntimeError("the summary's counts differ from the plain GROUP BY's")
    say(f"  page plan: {page_plan(container)}")
    return Store(n, db_name, container, clock, platform_ids)


def reads(n: int) -> list[tuple[str, Callable[[Connection], Any], int]]:
    """What is timed: (figure name, call, calls a round)."""
    baseline_calls = 10 if n >= 500_000 else 50  # a 1M-row GROUP BY takes most of a second here
    out: list[tuple[str, Callable[[Connection], Any], int]] = [
        ("summary_unfiltered", summary_call(None), SUMMARY_CALLS),
        ("summary_by_platform", summary_call("platform"), SUMMARY_CALLS),
        ("page_breached", lambda c: queries.orders(c, AUDITOR, status="breached", limit=50), PAGE_CALLS),
    ]
    for label, group in (("unfiltered", None), ("by_platform", "platform_id")):
        for with_p in (True, False):
            name = f"group_by_{label}" + ("" if with_p else "_counts_only")
            out.append((name, baseline_call(baseline_sql(group, with_p), with_p), baseline_calls))
    return out


def measure(stores: list[Store], now: datetime, rounds: int) -> dict[int, dict[str, float]]:
    """Every read and the sweep on every store, rounds interleaved across the stores; the best round of each."""
    runs: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for round_no in range(rounds):
        order = stores if round_no % 2 == 0 else stores[::-1]
        for index in range(len(reads(0))):
            for store in order:
                name, call, calls = reads(store.n)[index]
                times = timed(store.container, call, calls)
                runs.setdefault((store.n, name), []).append((_p(times, 0.95), statistics.median(times)))
    sweeps: dict[int, list[float]] = {store.n: [] for store in stores}
    for round_no in range(rounds + 1):  # round 0 is an untimed warm-up
        for store in stores if round_no % 2 == 0 else stores[::-1]:
            elapsed = sweep_once(store, now, round_no)
            if round_no:
                sweeps[store.n].append(elapsed)
    results: dict[int, dict[str, float]] = {}
    for store in stores:
        out = results[store.n] = {}
        say(f"\n{store.n:,} orders: reads (each call in its own read transaction; best of {rounds} rounds by p95)")
        for name, _, calls in reads(store.n):
            p95, p50 = min(runs[(store.n, name)])
            out[f"{name}_p50_ms"], out[f"{name}_p95_ms"] = p50, p95
            text_rounds = "; ".join(f"{b:.2f}/{a:.2f}" for a, b in runs[(store.n, name)])
            say(f"    {name:<32} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms   ({calls} calls; rounds p50/p95: {text_rounds})")
        times = sweeps[store.n]
        out["sweep_ms"], out["sweep_median_ms"] = min(times), statistics.median(times)
        say(
            f"    sweep, {DUE} due -> {DUE} level-1 escalations  best {min(times):8.1f} ms  median"
            f" {statistics.median(times):6.1f} ms   (rounds: {', '.join(f'{t:.1f}' for t in times)}; order view of"
            f" {store.n:,} rows with next_due_at NULL or in the future; exactly {DUE} escalations each round)"
        )
    return results


# ----------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="orders stored in the small run (default 10,000)")
    parser.add_argument("--big", type=int, default=None, help="orders stored in the big run (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 100,000-order big run")
    args = parser.parse_args()
    small, big = args.small, args.big or (100_000 if args.quick else 1_000_000)

    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    say(
        f"bench sla: {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, PostgreSQL at {ADMIN_URL}"
    )
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SELECT version(), current_setting('shared_buffers'), current_setting('jit')").fetchone()
    say(
        f"  server {row[0].split(' on ')[0] if row else '?'}, shared_buffers {row[1] if row else '?'}, jit {row[2] if row else '?'}"
    )
    template = f"{PREFIX}template"
    stores: list[Store] = []
    try:
        create_migrated(template)
        for n in (small, big):
            stores.append(setup_store(template, n, now, cross_check=n == small))
        admin("CHECKPOINT")  # the loads' dirty pages are written now, not during the timed calls
        results = measure(stores, now, args.rounds)
    finally:
        for store in stores:
            store.container.close()
            drop_db(store.db_name)
        drop_db(template)

    s, b = results[small], results[big]
    figures: dict[str, float] = {"small_orders": small, "big_orders": big}
    for name in s:
        figures[f"{name}_small"], figures[f"{name}_big"] = s[name], b[name]
    growth_of = (
        "summary_unfiltered_p50_ms", "summary_unfiltered_p95_ms", "summary_by_platform_p50_ms",
        "summary_by_platform_p95_ms", "page_breached_p50_ms", "page_breached_p95_ms", "sweep_ms",
    )  # fmt: skip
    say(f"\ngrowth from {small:,} to {big:,} orders (target <= 1.5) and summary vs plain GROUP BY (target <= 0.1):")
    met = True
    for name in growth_of:
        growth = b[name] / s[name]
        figures[f"growth_{name.removesuffix('_ms')}"] = growth
        # Issue 14 sets its targets for the unfiltered summary (a grouping or a period filter may cost more): the
        # grouped summary's growth is printed beside them, as information.
        verdict = "ok" if growth <= 1.5 else "MISSED"
        if "by_platform" in name:
            verdict = f"(information: {verdict.lower()})"
        else:
            met &= growth <= 1.5
        say(f"  {name:<30} {s[name]:8.2f} -> {b[name]:8.2f} ms   x{growth:.2f}  {verdict}")
    for label in ("unfiltered", "by_platform"):
        for size, r, tag in ((small, s, "small"), (big, b, "big")):
            ratio = r[f"summary_{label}_p95_ms"] / r[f"group_by_{label}_p95_ms"]
            counts_only = r[f"summary_{label}_p95_ms"] / r[f"group_by_{label}_counts_only_p95_ms"]
            figures[f"summary_{label}_vs_group_by_p95_{tag}"] = ratio
            figures[f"summary_{label}_vs_counts_only_group_by_p95_{tag}"] = counts_only
            verdict = "(information)"
            if tag == "big":  # the ratio target is for the big store; over 10,000 rows a GROUP BY is cheap anyway
                met &= ratio <= 0.1
                verdict = "ok" if ratio <= 0.1 else "MISSED"
            say(
                f"  summary {label:<12} at {size:>9,}: p95 {r[f'summary_{label}_p95_ms']:.2f} ms vs GROUP BY"
                f" +percentiles {r[f'group_by_{label}_p95_ms']:.2f} ms = {ratio:.3f} {verdict}"
                f" (vs counts-only GROUP BY {r[f'group_by_{label}_counts_only_p95_ms']:.2f} ms = {counts_only:.3f})"
            )
    say(f"  took {time.perf_counter() - started:.0f} s; load now {os.getloadavg()[0]:.2f}")
    report("sla", figures, TARGETS, met)
    return 0


if __name__ == "__main__":
    sys.exit(main())
