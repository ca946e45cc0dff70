"""Liveness, readiness (database reachable, migrations at head) and Prometheus metrics."""

from __future__ import annotations

from tests.support import Api


def test_health_readiness_and_metrics(api: Api) -> None:
    assert api.call("GET", "/healthz", None).json() == {"status": "ok"}
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 200
    assert ready.json()["migrations"]["current"] == ready.json()["migrations"]["head"] == "0002"
    metrics = api.call("GET", "/metrics", None)
    assert metrics.status_code == 200 and "takedown_webhook_attempts_total" in metrics.text


def test_readiness_fails_when_migrations_are_behind(api: Api) -> None:
    with api.container.db.transaction() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 503 and ready.json()["migrations"] == {"current": "older", "head": "0002"}
