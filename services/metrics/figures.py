"""Which figures each kind of process serves as its own: the table the alert rules, the dashboard and the tests
that scrape every kind of process are checked against (tests/test_alert_rules.py, tests/metrics/test_processes.py).

Names are metric families as Prometheus client libraries register them (a counter without its `_total`). Every
process registers every family (one import graph), but only these move in it; the embedded `run` serves them all.
"""

from __future__ import annotations

FIGURES: dict[str, frozenset[str]] = {
    "api": frozenset(
        {
            "takedown_http_requests",
            "takedown_http_request_seconds",
            "takedown_orders_issued",
            "takedown_unnumbered_events",
            "takedown_numbering_lag_seconds",
            "takedown_ledger_blocked",
            "takedown_ledger_blocked_position",
            "takedown_ledger_checkpoint_age_seconds",
            "takedown_read_replica_lag_seconds",
        }
    ),
    "sequencer": frozenset({"takedown_unnumbered_events", "takedown_numbering_lag_seconds"}),
    "scheduler": frozenset({"takedown_sla_orders", "takedown_escalations"}),
    "projections": frozenset({"takedown_projection_lag_events", "takedown_projection_lag_seconds"}),
    "ledger feeder": frozenset(
        {
            "takedown_ledger_blocked",
            "takedown_ledger_blocked_position",
            "takedown_ledger_refused",
            "takedown_ledger_checkpoint_age_seconds",
            "takedown_ledger_lag_events",
            "takedown_ledger_lag_seconds",
            "takedown_ledger_witness_cosigned_size",
            "takedown_ledger_witness_cosignature_age_seconds",
        }
    ),
    "notifier": frozenset(
        {
            "takedown_webhook_attempts",
            "takedown_webhook_attempt_seconds",
            "takedown_webhook_endpoints_disabled",
            "takedown_webhook_dead_letters",
        }
    ),
}
FIGURES["run"] = frozenset().union(*FIGURES.values())
