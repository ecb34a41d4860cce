"""Alert rules: valid for Prometheus, unit-tested with promtool, each with a README runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/prometheus/rotator-rules.yaml"
RULE_TESTS = ROOT / "deploy/prometheus/rotator-rules.test.yaml"
CHART_RULES = ROOT / "deploy/helm/rotator/files/rotator-rules.yaml"
RUNBOOK_BASE = "https://github.com/rotator/rotator/blob/main/README.md#"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: source scripts/setup.sh && ensure_promtool"
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def readme_anchors() -> set[str]:
    """GitHub's anchors for the README's headings."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass_under_promtool() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in alerts()} <= tested


def test_every_alert_says_what_happened_and_links_its_runbook_in_the_readme() -> None:
    anchors = readme_anchors()
    for rule in alerts():
        annotations = rule["annotations"]
        assert annotations["summary"]
        assert annotations["description"]
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_BASE)
        assert url.removeprefix(RUNBOOK_BASE) in anchors, f"README has no section for {url}"


def test_the_chart_ships_the_same_rules_as_the_plain_rules_file() -> None:
    assert CHART_RULES.read_text() == RULES.read_text()
