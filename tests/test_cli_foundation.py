"""The CLI as a user runs it: validate, db upgrade, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rotator.audit.records import SCHEMA_REVISION
from tests.support.cli import invoke
from tests.support.configs import config_text

ROOT = Path(__file__).resolve().parent.parent


def rotator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``rotator ARGS`` in this process (tests/support/cli.py)."""
    return invoke(args, env or {})


def rotator_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m rotator ARGS``: the exit code and streams a shell sees."""
    return subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


CREDENTIALS = {"TEST_VAULT_TOKEN": "t0ken-value", "TEST_DO_TOKEN": "do-token-value"}


def test_version_is_printed() -> None:
    result = rotator_process("--version")
    assert result.returncode == 0
    assert "rotator, version" in result.stdout


def test_validate_accepts_the_example_configuration() -> None:
    env = {
        "VAULT_ADDR": "http://127.0.0.1:8200",
        "VAULT_TOKEN": "x-token",
        "DIGITALOCEAN_TOKEN": "do-token",
        "ROTATOR_DB_PASSWORD": "pw",
        "H2OGPTE_ADMIN_KEY": "sk-admin",
        "AGENTEX_TOKEN": "agentex-token",
    }
    result = rotator("validate", "-c", str(ROOT / "config.example.yaml"), env=env)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_validate_exits_2_and_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "rotator.yaml"
    path.write_text(config_text().replace("schedule:", "shedule:"))
    result = rotator("validate", "-c", str(path), env=CREDENTIALS)
    assert result.returncode == 2
    assert f"{path}:" in result.stderr
    assert "policies.web.shedule: unknown key" in result.stderr


def test_a_missing_config_file_exits_2_with_what_to_do(tmp_path: Path) -> None:
    result = rotator_process("validate", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "configuration file not found" in result.stderr


def test_config_path_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.yaml"
    path.write_text(config_text())
    result = rotator("validate", env={**CREDENTIALS, "ROTATOR_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout


def test_db_upgrade_brings_postgres_to_head(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "rotator.yaml"
    path.write_text(config_text() + f"database: {{url: '{pg_url}'}}\n")
    result = rotator("db", "upgrade", "-c", str(path), env=CREDENTIALS)
    assert result.returncode == 0, result.stderr
    current = rotator("db", "current", "-c", str(path), env=CREDENTIALS)
    assert current.stdout.startswith(f"database: {SCHEMA_REVISION};")


def test_an_unreachable_database_exits_1_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "rotator.yaml"
    url = "postgresql+psycopg://nobody:${DB_PASSWORD}@127.0.0.1:1/none"
    path.write_text(config_text() + f"database: {{url: '{url}'}}\n")
    env = {**CREDENTIALS, "DB_PASSWORD": "hunter2-password"}
    result = rotator_process("db", "upgrade", "-c", str(path), env=env)
    assert result.returncode == 1
    assert "cannot use the audit database" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2-password" not in result.stderr


def test_help_imports_neither_pydantic_nor_the_libraries_of_a_run() -> None:
    # `rotator --help` (and shell completion) must answer at once: nothing it prints needs
    # the configuration models (pydantic), the database, Vault, HTTP or logging libraries.
    script = (
        "import sys\n"
        "from rotator.cli import main\n"
        "try:\n"
        "    main(['rotate', 'now', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'pydantic', 'sqlalchemy', 'hvac', 'httpx', 'structlog', 'rich'}\n"
        "print('heavy', sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert "--concurrency" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("heavy []")
