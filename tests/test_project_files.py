"""What a fresh clone holds for a user: the licence, shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.configs import config_text

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_file_is_the_apache_2_0_text_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()

    assert declared == "Apache-2.0"
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def complete(words: str, *, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "rotator"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            **(env or {}),
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            "_ROTATOR_COMPLETE": "bash_complete",
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines()]


def test_bash_completion_script_is_printed_as_the_readme_says() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rotator"],
        capture_output=True,
        text=True,
        env={**os.environ, "_ROTATOR_COMPLETE": "bash_source"},
        timeout=60,
    )

    assert result.returncode == 0
    assert "complete -o nosort -F _rotator_completion rotator" in result.stdout


def test_completion_offers_commands_and_the_configured_policy_names(tmp_path: Path) -> None:
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text())
    env = {
        "ROTATOR_CONFIG": str(config),
        "TEST_VAULT_TOKEN": "vault-token-value",
        "TEST_DO_TOKEN": "do-token-value",
    }

    assert complete("rotator rot") == ["rotate"]
    assert complete("rotator rotate now ", env=env) == ["web"]
    assert complete("rotator audit --policy w", env=env) == ["web"]
