"""Liveness, readiness (database reachable, migrations at head) and Prometheus metrics."""

from __future__ import annotations

from shared.migrate import current_revision, head_revision
from tests.support import Api


def migration_head(api: Api) -> str:
    """The newest migration the code ships, as alembic reads it from the migrations folder."""
    head = head_revision(api.container.db.engine)
    assert head, "alembic found no migration"
    return head


def test_health_readiness_and_metrics(api: Api) -> None:
    api.container.sequencer.catch_up()  # the registry's facts about the test's platforms (PostgreSQL)
    assert api.call("GET", "/healthz", None).json() == {"status": "ok"}
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 200
    head = migration_head(api)
    assert current_revision(api.container.db.engine) == head
    assert ready.json() == {
        "status": "ok",
        "migrations": {"current": head, "head": head},
        "numbering": {"unnumbered_events": 0, "lag_seconds": None},
        "ledger": {"status": "ok"},  # blocked: tests/ledger/test_admission.py
    }
    metrics = api.call("GET", "/metrics", None)
    assert metrics.status_code == 200 and "takedown_webhook_attempts_total" in metrics.text
    assert "takedown_unnumbered_events 0.0" in metrics.text
    assert "takedown_ledger_blocked 0.0" in metrics.text


def test_readiness_and_metrics_show_the_numbering_lag(api: Api) -> None:
    api.container.sequencer.catch_up()
    api.issue()
    api.advance(seconds=7)
    ready = api.call("GET", "/readyz", None)
    if api.container.db.dialect == "sqlite":
        # SQLite numbers events as it appends them: there is never a lag.
        assert ready.json()["numbering"] == {"unnumbered_events": 0, "lag_seconds": None}
        return
    assert ready.status_code == 200, "a lag is a detail, not unreadiness"
    assert ready.json()["numbering"] == {"unnumbered_events": 1, "lag_seconds": 7.0}
    assert "takedown_numbering_lag_seconds 7.0" in api.call("GET", "/metrics", None).text
    api.container.sequencer.catch_up()
    assert api.call("GET", "/readyz", None).json()["numbering"] == {"unnumbered_events": 0, "lag_seconds": None}


def test_readiness_fails_when_migrations_are_behind(api: Api) -> None:
    with api.container.db.transaction() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 503
    assert ready.json()["migrations"] == {"current": "older", "head": migration_head(api)}
