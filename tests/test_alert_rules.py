"""The shipped Prometheus alert rules name only metrics the service exports, and every gauge has a rule."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import services.bootstrap
import services.http.app  # noqa: F401 - the HTTP edge's gauges too

RULES = Path(__file__).resolve().parents[1] / "ops" / "prometheus" / "alerts.yml"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> dict[str, str]:
    """Every series name the service's metrics can write, with its metric's type."""
    names: dict[str, str] = {}
    for family in REGISTRY.collect():
        if family.name.startswith("takedown_"):
            for suffix in _SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = family.type
    return names


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_rule_names_only_exported_metrics_and_says_what_is_wrong() -> None:
    series = exported()
    assert series, "no takedown_ metric registered: the imports above changed"
    for rule in rules():
        assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"], rule  # type: ignore[index]
        named = set(re.findall(r"\btakedown_[a-z0-9_]+", str(rule["expr"])))
        assert named, rule["alert"]
        assert named <= set(series), (rule["alert"], named - set(series))


def test_every_gauge_the_service_exports_has_a_rule() -> None:
    gauges = {name for name, kind in exported().items() if kind == "gauge"}
    watched = {name for rule in rules() for name in re.findall(r"\btakedown_[a-z0-9_]+", str(rule["expr"]))}
    assert gauges - watched == set(), "a gauge without an alert rule"
