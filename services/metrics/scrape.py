"""The gauges read from the store when a process is scraped, each set by the kind of process that owns its figure.

The same readings answer /readyz (numbering, ledger, replica), so the two never disagree. Every gauge of the
service is defined here or beside the code that moves it (the ledger's blocked gauges), once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge
from sqlalchemy import Connection

from services.ledger.errors import NoCheckpoint
from services.sla.queries import status_counts
from shared.projections import positions

if TYPE_CHECKING:  # the container is built by bootstrap, which wires this package's handlers: no import cycle
    from services.bootstrap import Container

log = logging.getLogger("takedown.metrics")

UNNUMBERED = Gauge("takedown_unnumbered_events", "Committed events still waiting for a global position")
NUMBERING_LAG = Gauge("takedown_numbering_lag_seconds", "Age of the oldest committed event without a global position")
REPLICA_LAG = Gauge("takedown_read_replica_lag_seconds", "How far the read side's replica is behind (NaN: unreachable)")
CHECKPOINT_AGE = Gauge(
    "takedown_ledger_checkpoint_age_seconds", "Time since the newest signed checkpoint (NaN: none yet)"
)
LEDGER_LAG_EVENTS = Gauge("takedown_ledger_lag_events", "Numbered events not yet in the ledger's tree")
LEDGER_LAG = Gauge("takedown_ledger_lag_seconds", "Age of the oldest numbered event not yet in the ledger's tree")
PROJECTION_LAG_EVENTS = Gauge(
    "takedown_projection_lag_events", "Numbered events a projection has not applied yet", ["projection"]
)
PROJECTION_LAG = Gauge(
    "takedown_projection_lag_seconds", "Age of the oldest numbered event a projection has not applied", ["projection"]
)
SLA_ORDERS = Gauge("takedown_sla_orders", "Orders by SLA status (the SLA projection's exact counters)", ["status"])


def numbering(c: Container, conn: Connection) -> dict[str, Any]:
    """The sequencer's lag, as /readyz details it and the gauges report it (readers by position wait this long)."""
    count, oldest = c.store.unnumbered(conn)
    lag = max(0.0, (c.clock.now() - oldest).total_seconds()) if oldest is not None else None
    UNNUMBERED.set(count)
    NUMBERING_LAG.set(lag or 0.0)
    return {"unnumbered_events": count, "lag_seconds": lag}


def replica(c: Container) -> dict[str, Any]:
    """The read side's lag, as /readyz details it and the gauge reports it: how old the oldest event is that the
    replica does not hold yet (0 when it holds every numbered event), so what a dashboard reader misses.

    Counted in events, not WAL: a standby's own replay delay reads the cluster's WAL, which every database on the
    server and every checkpoint add to; this service's readers care only about its events.
    """
    try:
        with c.read_db.read() as conn:
            seen = c.store.head(conn)
        with c.db.read() as conn:
            head = c.store.head(conn)
            missing = c.store.read_all(conn, after=seen, limit=1) if head > seen else []
    except Exception as exc:  # noqa: BLE001 - reported, never raised: /readyz and /metrics answer whatever is down
        REPLICA_LAG.set(float("nan"))
        return {"lag_seconds": None, "events_behind": None, "error": type(exc).__name__}
    lag = _age(c, missing)
    REPLICA_LAG.set(lag)
    return {"lag_seconds": lag, "events_behind": max(0, head - seen)}


def ledger_state(c: Container) -> dict[str, Any]:
    """Whether the feeder refuses the next event, as /readyz details it (read from the store, not one process);
    sets the ledger gauges, the newest checkpoint's age among them."""
    try:
        age = (c.clock.now() - c.ledger.latest_checkpoint().created_at).total_seconds()
    except NoCheckpoint:
        age = float("nan")
    CHECKPOINT_AGE.set(age)
    refused = c.ledger.blocked()
    if refused is None:
        return {"status": "ok"}
    return {"status": "blocked", "position": refused.position, "reason": refused.reason}


def witnesses(c: Container) -> None:
    """Each witness's newest cosigned size and the age of its cosignature, from the store."""
    c.ledger.witnessing.report()


def witness_states(c: Container) -> list[dict[str, Any]]:
    """Each configured witness as /readyz details it, from the store (never asking the witness: one that is down
    makes nothing slow or unready); sets the witness gauges too."""
    now = c.clock.now()
    urls = {w.name: w.url for w in c.ledger.witnessing.witnesses}
    return [
        {
            "name": s.name,
            "url": urls[s.name],
            "cosigned_size": s.cosigned_size,
            "cosignature_age_seconds": None
            if s.received_at is None
            else max(0.0, (now - s.received_at).total_seconds()),
            "failures": s.state.failures,
            "last_error": s.state.last_error,
            "retry_at": s.state.retry_at,
        }
        for s in c.ledger.witnessing.report()
    ]


def ledger_lag(c: Container) -> None:
    """How far the tree is behind the numbered events, in events and in the age of the oldest one it lacks."""
    size = c.ledger.head().size
    with c.db.read() as conn:
        head = c.store.head(conn)
        missing = c.store.read_all(conn, after=size, limit=1) if head > size else []
    LEDGER_LAG_EVENTS.set(max(0, head - size))
    LEDGER_LAG.set(_age(c, missing))


def projection_lag(c: Container) -> None:
    """How far each projection the runner keeps is behind the numbered events (a projection not started yet is at 0)."""
    with c.db.read() as conn:
        head = c.store.head(conn)
        applied = positions(conn)
        for projection in c.projections.projections:
            at = applied.get(projection.name, 0)
            missing = c.store.read_all(conn, after=at, limit=1) if head > at else []
            PROJECTION_LAG_EVENTS.labels(projection.name).set(max(0, head - at))
            PROJECTION_LAG.labels(projection.name).set(_age(c, missing))


def sla_statuses(c: Container) -> None:
    """The orders in each SLA status, from the SLA projection's counters (one small read, whatever the orders)."""
    with c.db.read() as conn:
        counts = status_counts(conn)
    for status, n in counts.items():
        SLA_ORDERS.labels(status).set(n)


def _numbering_now(c: Container) -> None:
    with c.db.read() as conn:
        numbering(c, conn)


def _replica_if_any(c: Container) -> None:
    if c.read_db is not c.db:
        replica(c)


def _age(c: Container, events: list[Any]) -> float:
    """Seconds since the first of these events was recorded (0 without one)."""
    return max(0.0, (c.clock.now() - events[0].recorded_at).total_seconds()) if events else 0.0


Reading = Callable[["Container"], object]

# Which figures each kind of process reads when scraped: those of the part it runs (the API: what /readyz shows).
READINGS: dict[str, tuple[Reading, ...]] = {
    "api": (_numbering_now, ledger_state, _replica_if_any),
    "sequencer": (_numbering_now,),
    "scheduler": (sla_statuses,),
    "projections": (projection_lag,),
    "ledger feeder": (ledger_state, ledger_lag, witnesses),
    "notifier": (),  # its figures are counters and histograms, moved as it delivers
}
# The embedded process runs every part: it reads every figure.
READINGS["run"] = tuple(dict.fromkeys(r for kind in READINGS.values() for r in kind))


def refresh(c: Container, kinds: Iterable[str]) -> None:
    """Set the gauges these kinds of process own from the store; a reading that fails leaves its gauge as it was
    (a scrape answers with the database down: the staleness shows in the figures that stop moving)."""
    for reading in dict.fromkeys(r for kind in kinds for r in READINGS[kind]):
        try:
            reading(c)
        except Exception:  # metrics must answer whatever is down: logged, never raised
            log.debug("metrics: a reading failed", exc_info=True)
