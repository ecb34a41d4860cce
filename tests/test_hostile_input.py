"""Hostile or broken input files: refused quickly and clearly, touching nothing.

YAML alias bombs, credential files that are devices or world-readable, policy
names and Vault paths that climb out of their place, numbers that mean
nothing, a database created readable by others, a downgrade that drops the
audit trail.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from rotator.cli import main
from rotator.config.yaml_source import load_yaml
from rotator.errors import ConfigError
from tests.support.configs import config_text

BILLION_LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10)
)
RECURSIVE = "a: &x [*x]\n"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "rotator.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exited:
        main(["validate", "-c", str(config)])
    return int(exited.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("text", [BILLION_LAUGHS, RECURSIVE], ids=["billion-laughs", "recursive"])
def test_a_yaml_alias_bomb_exits_2_within_a_second_using_little_memory(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracemalloc.start()
    started = time.monotonic()

    code, error = validate(tmp_path, text, capsys)

    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert code == 2
    assert "alias" in error
    assert elapsed < 1.0
    assert peak < 50 * 1024 * 1024


def test_a_recursive_alias_names_its_line() -> None:
    with pytest.raises(ConfigError, match=r"rotator\.yaml:1: .*refers to itself"):
        load_yaml(RECURSIVE, "rotator.yaml")


def test_aliases_within_reason_still_work() -> None:
    text = "defaults: &d {every: 30d, window: 1h}\n" + "".join(
        f"p{n}: {{<<: *d, name: p{n}}}\n" for n in range(2000)
    )

    data = load_yaml(text, "rotator.yaml").data

    assert data["p1999"]["every"] == "30d"


def test_a_valid_file_still_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text())

    main(["validate", "-c", str(config)])

    assert "OK" in capsys.readouterr().out
