"""The Grafana dashboard: well-formed, templated, and built only on metrics a daemon exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import RunningDaemon, wait_until
from tests.support.rig import Rig

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/rotator.json"
CHART_DASHBOARD = ROOT / "deploy/helm/rotator/files/rotator-dashboard.json"
RULES = ROOT / "deploy/prometheus/rotator-rules.yaml"
METRIC = re.compile(r"\brotator_[a-z_]+\b")


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_expressions() -> list[str]:
    board = dashboard()
    queries = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    variables = [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return queries + variables


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_the_dashboard_is_templated_on_data_source_namespace_and_policy() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "policy"} <= set(variables)
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"]


def test_the_dashboard_has_the_panels_an_operator_looks_for() -> None:
    expressions = "\n".join(dashboard_expressions())
    for needed in (
        "sum by (outcome) (increase(rotator_rotations_total",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "rotator_key_age_seconds",
        "rotator_rotation_interval_seconds",
        "rotator_next_due_timestamp_seconds",
        "sum by (provider, provider_type, status) (increase(rotator_vendor_call_errors_total",
        "rotator_policy_needs_attention",
    ):
        assert needed in expressions


def test_the_chart_ships_the_same_dashboard() -> None:
    assert CHART_DASHBOARD.read_text() == DASHBOARD.read_text()


def test_every_metric_of_the_dashboard_and_the_alerts_is_on_a_running_daemons_metrics(
    rig_factory: Callable[[str], Rig],
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("done", strategy="create_then_delete", grace="0s")
    rig.add_policy("in-grace", strategy="create_then_delete", grace="1h")
    rig.server.fail("GET", ".", status=503, times=1)  # one vendor error, retried
    daemon = RunningDaemon(rig).start()
    try:
        wait_until(lambda: rig.completed_rotations("done") == 1)
        wait_until(lambda: "rotator_grace_until_timestamp_seconds{" in daemon.get("/metrics").text)
        exposed = {
            sample.name
            for family in text_string_to_metric_families(daemon.get("/metrics").text)
            for sample in family.samples
        }
    finally:
        daemon.stop()

    used = {
        m for expr in dashboard_expressions() + rule_expressions() for m in METRIC.findall(expr)
    }
    assert used
    assert used <= exposed, f"not exposed: {sorted(used - exposed)}"
