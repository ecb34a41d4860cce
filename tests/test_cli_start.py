"""What a command's start-up imports: only what the command uses.

A CronJob or a one-shot `rotate now` starts a fresh process each time, and the imports
are most of its start. rich (with pygments and attrs) is imported by structlog for an
exception formatter rotator never reaches (exceptions are rendered to text by
``format_exc_info`` first) and by httpx for its own command line: a run whose output is not
a rich table or progress bar leaves it out. Commands that render with rich import it
themselves (tests/test_cli_status.py, tests/test_cli_plan.py check their output).
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.configs import config_text


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")


def dry_run_in_a_process(
    database_url: str, tmp_path: Path, before: str, after: str
) -> subprocess.CompletedProcess[str]:
    """``rotate now --all --dry-run`` through ``main`` in a fresh interpreter, with ``before``
    and ``after`` run around it (the dry run still imports and opens the engine)."""
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text() + f'database: {{url: "{database_url}"}}\n')
    script = "\n".join(
        [
            "import atexit, gc, os, sys",
            before,
            "from rotator.cli import main",
            "try:",
            f"    main(['rotate', 'now', '--all', '--dry-run', '-c', {str(config)!r}])",
            "except SystemExit:",
            "    pass",
            after,
        ]
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_rotate_now_off_a_terminal_imports_logging_and_http_but_not_rich(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    shown = "loaded = {'structlog', 'httpx', 'sqlalchemy', 'rich', 'pygments', 'attr'}"
    result = dry_run_in_a_process(
        migrated_sqlite_url,
        tmp_path,
        "",
        f"{shown}\nprint('loaded', sorted(loaded & set(sys.modules)))",
    )

    assert "web" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("loaded ['httpx', 'sqlalchemy', 'structlog']")


def test_a_one_shot_command_imports_no_metrics_library(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    # Only the daemon serves /metrics: a one-shot run's counters would die with it unread.
    shown = "loaded = sorted(m for m in sys.modules if m.startswith('prometheus_client'))"
    result = dry_run_in_a_process(
        migrated_sqlite_url, tmp_path, "", f"{shown}\nprint('metrics', loaded)"
    )

    assert "web" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("metrics []")


def test_a_run_on_sqlite_imports_no_postgresql_support(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    # SQLAlchemy imports a dialect to check its options: the partial indexes' WHERE clauses
    # (postgresql_where, sqlite_where) are declared only where Alembic runs.
    shown = "loaded = sorted(m for m in sys.modules if 'postgresql' in m or 'psycopg' in m)"
    result = dry_run_in_a_process(
        migrated_sqlite_url, tmp_path, "", f"{shown}\nprint('postgresql', loaded)"
    )

    assert "web" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("postgresql []")


def test_a_command_leaves_its_objects_out_of_the_shutdown_garbage_collection(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    # At exit the interpreter would run the cyclic collector over every object the libraries
    # made (a fifth of a short `rotate now`'s CPU); the operating system frees the memory
    # anyway. Checked from an exit handler that runs after rotator's (they run last-in,
    # first-out): by then the objects are frozen, i.e. exempt from that collection.
    report = "atexit.register(lambda: os.write(1, f'frozen {gc.get_freeze_count() > 0}'.encode()))"
    result = dry_run_in_a_process(migrated_sqlite_url, tmp_path, report, "")

    assert "web" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("frozen True")


def test_a_command_run_in_process_leaves_the_garbage_collector_as_it_found_it(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    # A command's start-up runs with the collector off and freezes what it made (a process
    # that exits needs no collection of it); a caller that carries on gets both back.
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text() + f'database: {{url: "{migrated_sqlite_url}"}}\n')

    result = invoke(["rotate", "now", "--all", "--dry-run", "-c", str(config)], env={})

    assert "web" in result.stdout, result.stderr
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
