"""Ledger cost and speed on PostgreSQL: intake with the feeder on and off, catch-up vs appends, proofs at 1k and 1M (issue 15).

Run: `.venv/bin/python bench/ledger.py [--quick] [--orders N] [--rounds R] [--big N]` (PostgreSQL at 127.0.0.1:5432,
user postgres; override with BENCH_PG_URL=postgresql://user@host:port/admin_db). It creates databases named
bench_ledger_* and drops them.

1. Intake: N orders issued through `OrderService.issue` (the real command handler: events, order view, outbox in one
   transaction) by 4 spawned writer processes with static shares, after an untimed warm-up, a start barrier; the
   sequencer runs in the parent. "off": the clock stops when every event has its position. "on": the ledger feeder
   (the production `LedgerFeeder` loop) also runs in the parent and the clock stops when every event is also a leaf.
   Rounds alternate off/on; the best round of each is kept. Cost = 1 - on / off.
2. Catch-up: 4 writer processes append orders of 4 events straight to the store (`EventStore.append`, one
   transaction each, sequencer running; the store's own rate, events/s), then the feeder catches up on those events
   from an empty tree (leaves/s, one `run_once` transaction per batch of 5000). Ratio = leaves/s / events/s.
3. Proofs: trees of 1,000 and of --big (default 1,000,000) leaves, filled directly through `tree.append` (the feeder's
   own write path, on synthetic leaf hashes, in chunks of 100,000; tests/ledger cross-check it with the RFC root);
   then 1000 random inclusion proofs (`tree.inclusion_proof`, leaf vs the full tree) and 1000 random consistency
   proofs (`tree.consistency_proof`, random first vs the full tree), each in its own read transaction; p50/p95 ms.
The last printed line is the JSON object described in shared/docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.pg import ADMIN_URL, collect, conninfo, create_db, create_migrated, drop_db, report, sa_url, say  # noqa: E402

PREFIX = f"bench_ledger_{os.getpid()}_"  # per run: helpers on one server run benches at once
WRITERS = 4
WARMUP_ORDERS = 10  # per writer, untimed
PROOF_SAMPLES = 1000
BULK_CHUNK = 100_000
TARGETS = {
    "ledger_cost_share": "< 0.10",
    "catch_up_ratio": ">= 1",
    "inclusion_p95_growth": "<= 2",
    "consistency_p95_growth": "<= 2",
}


# ----------------------------------------------------------------------------------------------------- plumbing


def _container(dbname: str) -> Any:
    from services.bootstrap import bootstrap
    from shared.settings import Settings

    # A throwaway signing key (the scheduled checkpoints sign with it), never a ./ledger.key file.
    key = SecretStr(base64.b64encode(hashlib.sha256(dbname.encode()).digest()).decode())
    return bootstrap(Settings(environment="test", database_url=sa_url(dbname), embedded_workers=False, ledger_key=key))


def _count(dbname: str, sql: str) -> int:
    with psycopg.connect(**conninfo(dbname)) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


# ----------------------------------------------------------------------------------------------------- writers


def writer_process(
    kind: str, dbname: str, platform_id: str, index: int, orders: int, ready: Any, start: Any, done: Any
) -> None:
    """One writer: `intake` issues orders through the OrderService; `append` appends 4-event orders to the store."""
    try:
        from bench.sample import ISSUER, order_document, order_fields
        from shared.eventstore import NewEvent
        from shared.ids import new_id

        container = _container(dbname)

        def intake(n: int) -> None:
            container.orders.issue(ISSUER, order_fields(platform_id, f"B-{index}-{n}"), None)

        def append(n: int) -> None:
            document = order_document(platform_id, f"B-{index}-{n}")
            new = [
                NewEvent(type="order.issued", data=document),
                NewEvent(type="order.delivered", data={"channel": "webhook", "attempt": 1}),
                NewEvent(type="order.acknowledged", data={"note": None}),
                NewEvent(type="order.item_outcome_reported", data={"item_id": "1", "outcome": "removed"}),
            ]
            with container.db.transaction() as conn:
                container.store.append(conn, new_id(), 0, new, recorded_at=datetime.now(UTC))

        write = intake if kind == "intake" else append
        for n in range(WARMUP_ORDERS):
            write(n)
        ready.put(("ready", index))
        start.wait()
        t0 = time.perf_counter()
        for n in range(WARMUP_ORDERS, WARMUP_ORDERS + orders):
            write(n)
        done.put(("done", index, t0, time.perf_counter()))
        container.close()
    except BaseException:
        done.put(("error", index, traceback.format_exc()))
        ready.put(("error", index, traceback.format_exc()))
        raise


def run_writers(kind: str, dbname: str, orders: int, ledger_on: bool) -> dict[str, float]:
    """Time `orders` orders over WRITERS processes until every event is numbered (and a leaf, with the ledger on)."""
    container = _container(dbname)
    from bench.sample import platform_fields

    with container.db.transaction() as conn:
        platform, _ = container.registry.register_in(conn, platform_fields("P"), container.clock.now())
    ctx = mp.get_context("spawn")
    ready, done, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [orders // WRITERS + (1 if k < orders % WRITERS else 0) for k in range(WRITERS)]
    procs = [
        ctx.Process(target=writer_process, args=(kind, dbname, platform.id, k, shares[k], ready, start, done))
        for k in range(WRITERS)
    ]
    try:
        for p in procs:
            p.start()
        collect(ready, procs, kind, timeout_s=300)
        container.sequencer.catch_up()
        if ledger_on:
            container.ledger.feed()  # the warm-up's leaves before the clock starts
            container.ledger.feeder.loop.interval_s = 0.05  # poll faster than the default 0.1 s
            container.ledger.start()
        container.sequencer.start()
        t_start = time.perf_counter()
        start.set()
        collect(done, procs, kind, timeout_s=1800)
        t_written = time.perf_counter()
        container.sequencer.catch_up()
        if ledger_on:
            total = _count(dbname, "SELECT count(*) FROM events")
            while container.ledger.head().size < total:
                time.sleep(0.002)
        t_end = time.perf_counter()
        container.sequencer.stop()
        container.ledger.stop()
        for p in procs:
            p.join(timeout=60)
        events = _count(dbname, "SELECT count(*) FROM event_positions")
        return {
            "orders_per_s": orders / (t_end - t_start),
            "seconds": t_end - t_start,
            "tail_ms": (t_end - t_written) * 1000,
            "events": events,
        }
    finally:
        container.close()
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)


# ----------------------------------------------------------------------------------------------------- sections


def intake_rounds(template: str, orders: int, rounds: int) -> dict[str, float]:
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for round_no in range(rounds):
        for mode in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
            dbname = f"{PREFIX}intake_{mode}"
            create_db(dbname, template)
            try:
                r = run_writers("intake", dbname, orders, ledger_on=mode == "on")
            finally:
                drop_db(dbname)
            runs[mode].append(r)
            say(
                f"  round {round_no + 1}  ledger {mode:<3} {r['orders_per_s']:8.1f} orders/s"
                f"  ({r['events']:.0f} events; {r['tail_ms']:.0f} ms after the last commit until numbered"
                + (" and fed)" if mode == "on" else ")")
            )
    off = max(r["orders_per_s"] for r in runs["off"])
    on = max(r["orders_per_s"] for r in runs["on"])
    say(f"  best: off {off:.1f}, on {on:.1f} orders/s; the ledger costs {100 * (1 - on / off):.1f}% of intake")
    return {"intake_off_orders_per_s": off, "intake_on_orders_per_s": on, "ledger_cost_share": 1 - on / off}


def catch_up(template: str, orders: int) -> dict[str, float]:
    dbname = f"{PREFIX}catchup"
    create_db(dbname, template)
    try:
        r = run_writers("append", dbname, orders, ledger_on=False)
        events_per_s = 4 * orders / r["seconds"]
        # The production feeder, screening every event against the writer key the writers sealed with.
        container = _container(dbname)
        total = r["events"]
        t0 = time.perf_counter()
        fed = container.ledger.feeder.catch_up()
        elapsed = time.perf_counter() - t0
        container.close()
        if fed != total:
            raise RuntimeError(f"the feeder added {fed} leaves, expected {total}")
    finally:
        drop_db(dbname)
    leaves_per_s = fed / elapsed
    say(
        f"  store appends, {WRITERS} writers: {events_per_s:,.0f} events/s ({r['orders_per_s']:.0f} orders/s of 4 events, numbered)"
    )
    say(f"  feeder catch-up over {fed:,} events: {leaves_per_s:,.0f} leaves/s; ratio {leaves_per_s / events_per_s:.2f}")
    return {
        "append_events_per_s_4w": events_per_s,
        "catch_up_leaves_per_s": leaves_per_s,
        "catch_up_ratio": leaves_per_s / events_per_s,
    }


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[max(0, int(q * len(ordered)) - 1)]


def proofs_at(template: str, size: int) -> dict[str, float]:
    from services.ledger import tree
    from shared.db import Database, make_engine
    from shared.tlog import merkle

    dbname = f"{PREFIX}proofs_{size}"
    create_db(dbname, template)
    db = Database(make_engine(sa_url(dbname)))
    try:
        t0 = time.perf_counter()
        for lo in range(0, size, BULK_CHUNK):
            hashes = [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(lo, min(size, lo + BULK_CHUNK))]
            with db.transaction() as conn:
                current = tree.lock_head(conn)
                assert current is not None and current.size == lo
                tree.append(conn, current, hashes)
        with psycopg.connect(**conninfo(dbname), autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) ledger_nodes")
        build_s = time.perf_counter() - t0
        rnd = random.Random(size)
        inclusion, consistency = [], []
        with db.read() as conn:  # warm the connection and the plan cache once, untimed
            tree.inclusion_proof(conn, 0, size)
        for _ in range(PROOF_SAMPLES):
            index = rnd.randrange(size)
            t = time.perf_counter()
            with db.read() as conn:
                path = tree.inclusion_proof(conn, index, size)
            inclusion.append((time.perf_counter() - t) * 1000)
            first = rnd.randint(1, size)
            t = time.perf_counter()
            with db.read() as conn:
                proof = tree.consistency_proof(conn, first, size)
            consistency.append((time.perf_counter() - t) * 1000)
        merkle.verify_inclusion(index, size, path.leaf_hash, path.proof, path.root)  # the last ones are real proofs
        merkle.verify_consistency(first, size, proof.first_root, proof.second_root, proof.proof)
    finally:
        db.engine.dispose()
        drop_db(dbname)
    label = f"{size:,}"
    say(
        f"  {label:>9} leaves (built in {build_s:.1f} s): inclusion p50 {statistics.median(inclusion):.2f} ms,"
        f" p95 {_p(inclusion, 0.95):.2f} ms; consistency p50 {statistics.median(consistency):.2f} ms,"
        f" p95 {_p(consistency, 0.95):.2f} ms"
    )
    return {
        "build_s": build_s,
        "inclusion_p50_ms": statistics.median(inclusion),
        "inclusion_p95_ms": _p(inclusion, 0.95),
        "consistency_p50_ms": statistics.median(consistency),
        "consistency_p95_ms": _p(consistency, 0.95),
    }


# ----------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--orders", type=int, default=None, help="orders per intake/append run (default 2000; --quick 200)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="intake rounds of off+on (default 3; --quick 1)")
    parser.add_argument(
        "--big", type=int, default=None, help="leaves of the big proof tree (default 1,000,000; --quick 100,000)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 orders, 1 round, a 100,000-leaf big tree")
    args = parser.parse_args()
    orders = args.orders or (200 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 3)
    big = args.big or (100_000 if args.quick else 1_000_000)

    say(f"bench ledger: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, PostgreSQL at {ADMIN_URL}")
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    say(f"  server {row[0] if row else '?'}; load generator: {WRITERS} spawned writer processes, static shares")
    template = f"{PREFIX}template"
    figures: dict[str, float] = {}
    try:
        create_migrated(template)

        say(
            f"\n1. intake through the OrderService, {orders} orders, {WRITERS} writers, ledger off vs on; best of {rounds}"
        )
        figures.update(intake_rounds(template, orders, rounds))
        say(f"\n2. feeder catch-up vs the store's append rate ({orders} orders x 4 events, {WRITERS} writers)")
        figures.update(catch_up(template, orders))
        say(f"\n3. proofs ({PROOF_SAMPLES} random each, own read transaction each)")
        small, large = proofs_at(template, 1000), proofs_at(template, big)
        for name, value in small.items():
            figures[f"{name}_1k"] = value
        for name, value in large.items():
            figures[f"{name}_big"] = value
        figures["big_tree_leaves"] = big
        figures["inclusion_p95_growth"] = large["inclusion_p95_ms"] / small["inclusion_p95_ms"]
        figures["consistency_p95_growth"] = large["consistency_p95_ms"] / small["consistency_p95_ms"]
        say(
            f"  p95 growth from 1,000 to {big:,} leaves: inclusion x{figures['inclusion_p95_growth']:.2f},"
            f" consistency x{figures['consistency_p95_growth']:.2f}"
        )
    finally:
        drop_db(template)

    met = (
        figures["ledger_cost_share"] < 0.10
        and figures["catch_up_ratio"] >= 1
        and figures["inclusion_p95_growth"] <= 2
        and figures["consistency_p95_growth"] <= 2
    )
    report("ledger", figures, TARGETS, met)
    return 0


if __name__ == "__main__":
    sys.exit(main())
