"""The shipped Prometheus alert rules and Grafana dashboard name only metrics the service exports, each from the kind
of process that serves it (services/metrics/figures.py, which tests/metrics/test_processes.py checks against real
processes), and every gauge has a rule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import services.bootstrap
import services.http.app  # noqa: F401 - the HTTP edge's metrics too
from services.metrics.figures import FIGURES

OPS = Path(__file__).resolve().parents[1] / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
SCRAPES = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "takedown.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
_METRIC = re.compile(r"\btakedown_[a-z0-9_]+")
_JOB = re.compile(r'\bjob=~?"([^"]+)"')
# Series Prometheus makes itself for every target (not the service's).
PROMETHEUS_OWN = {"up"}


def families() -> dict[str, str]:
    """Every takedown_ metric family the service registers, with its type."""
    return {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("takedown_")}


def series_of(names: frozenset[str] | set[str]) -> set[str]:
    """Every series name these families write (a counter's `_total`, a histogram's buckets, sum and count)."""
    types = families()
    return {name + suffix for name in names for suffix in _SUFFIXES.get(types[name], ("",))}


def exported() -> dict[str, str]:
    """Every series name the service's metrics can write, with its metric's type."""
    return {name + suffix: kind for name, kind in families().items() for suffix in _SUFFIXES.get(kind, ("",))}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def scrape_jobs() -> set[str]:
    return {job["job_name"] for job in yaml.safe_load(SCRAPES.read_text())["scrape_configs"]}


def dashboard_panels() -> list[tuple[str, dict[str, Any]]]:
    """(the kind of process its row names, panel) for every panel of the dashboard."""
    found = []
    kind = ""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            kind = panel["title"].split(":")[0]
        else:
            found.append((kind, panel))
    return found


def test_the_table_of_figures_names_only_registered_metrics_and_every_metric_has_a_process() -> None:
    registered = set(families())
    assert registered, "no takedown_ metric registered: the imports above changed"
    declared = set().union(*FIGURES.values())
    assert declared - registered == set(), "FIGURES names a metric nobody registers"
    assert registered - declared == set(), "a metric no kind of process serves as its own"


def test_every_rule_names_only_metrics_its_process_exports_and_says_what_is_wrong() -> None:
    jobs = scrape_jobs()
    for rule in rules():
        assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"], rule
        process = rule["labels"]["process"]
        assert process in FIGURES, (rule["alert"], process)
        expr = str(rule["expr"])
        named = set(_METRIC.findall(expr))
        assert named or PROMETHEUS_OWN & set(re.findall(r"\b[a-z_]+(?=\{)", expr)), rule["alert"]
        assert named <= series_of(FIGURES[process]), (rule["alert"], process, named - series_of(FIGURES[process]))
        assert set(_JOB.findall(expr)) <= jobs, (rule["alert"], "a job the scrape configuration does not have")


def test_every_gauge_the_service_exports_has_a_rule() -> None:
    gauges = {name for name, kind in exported().items() if kind == "gauge"}
    watched = {name for rule in rules() for name in _METRIC.findall(str(rule["expr"]))}
    assert gauges - watched == set(), "a gauge without an alert rule"


def test_the_rules_ask_for_what_the_issue_asked_for() -> None:
    alerts = {rule["alert"]: str(rule["expr"]) for rule in rules()}
    wanted = {
        "TakedownBreachedOrdersRising": 'takedown_sla_orders{status="breached"}',
        "TakedownDeadLetters": "takedown_webhook_dead_letters_total",
        "TakedownProjectionLag": "takedown_projection_lag_seconds",
        "TakedownLedgerLag": "takedown_ledger_lag_seconds",
        "TakedownNoCheckpoint": "takedown_ledger_checkpoint_age_seconds",
        "TakedownNotifierDown": 'up{job="takedown-notifier"}',
    }
    for alert, fragment in wanted.items():
        assert fragment in alerts.get(alert, ""), alert


def test_every_dashboard_panel_names_only_metrics_its_rows_process_exports() -> None:
    panels = dashboard_panels()
    assert panels
    jobs = scrape_jobs()
    shown: set[str] = set()
    for kind, panel in panels:
        assert kind in FIGURES, (panel["title"], kind)
        exprs = [target["expr"] for target in panel["targets"]]
        named = {name for expr in exprs for name in _METRIC.findall(expr)}
        assert named or any("up{" in expr for expr in exprs), panel["title"]
        assert named <= series_of(FIGURES[kind]), (panel["title"], kind, named - series_of(FIGURES[kind]))
        assert {job for expr in exprs for job in _JOB.findall(expr)} <= jobs, panel["title"]
        shown |= named
    # Every family is on the dashboard somewhere.
    missing = {name for name in families() if not series_of({name}) & shown}
    assert missing == set(), missing


def test_the_scrape_configuration_has_a_job_per_kind_of_process_and_loads_the_rules() -> None:
    document = yaml.safe_load(SCRAPES.read_text())
    assert "alerts.yml" in document["rule_files"]
    kinds = {kind.replace(" ", "-") for kind in FIGURES} - {"run"}
    assert {f"takedown-{kind}" for kind in kinds} == scrape_jobs()


def test_prometheus_accepts_the_rules_and_they_fire_as_their_unit_tests_say() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make install` installs it (Debian's prometheus package)"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_targets_are_the_compose_services_on_their_metrics_ports() -> None:
    compose = yaml.safe_load((OPS.parent / "docker-compose.yml").read_text())["services"]
    for job in yaml.safe_load(SCRAPES.read_text())["scrape_configs"]:
        for target in (t for config in job["static_configs"] for t in config["targets"]):
            host, _, port = target.partition(":")
            assert host in compose, (job["job_name"], target)
            env = compose[host]["environment"]
            if job["job_name"] == "takedown-api":
                assert f"--port {port}" in " ".join(compose[host]["command"]), target
                continue
            first = int(env["TAKEDOWN_METRICS_PORT"])
            children = int(env.get("TAKEDOWN_NOTIFIER_PROCESSES", 1)) if host.startswith("notifier") else 1
            assert first <= int(port) < first + children, (target, "no process of the service serves this port")
