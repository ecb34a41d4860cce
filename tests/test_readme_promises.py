"""The README backs its promises with tests named for them: every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_readme_names_exists() -> None:
    cited = set(re.findall(r"`(test_\w+)", (ROOT / "README.md").read_text()))
    sources = [*(ROOT / "tests").rglob("*.py"), ROOT / "rotator/testing.py"]
    defined = {
        name
        for source in sources
        for name in re.findall(r"^\s*(?:async )?def (test_\w+)", source.read_text(), re.M)
    }

    assert cited, "the README names no test"
    assert sorted(cited - defined) == []
