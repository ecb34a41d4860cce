"""The README's demo command shows a real rotation from nothing, and cleans up."""

from __future__ import annotations

import subprocess
import sys


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
