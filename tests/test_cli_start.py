"""What a command's start-up imports: only what the command uses.

A CronJob or a one-shot `rotate now` starts a fresh process each time, and the imports
are most of its start. rich (with pygments and attrs) is imported by structlog for an
exception formatter rotator never reaches (exceptions are rendered to text by
``format_exc_info`` first) and by httpx for its own command line: a run whose output is not
a rich table or progress bar leaves it out. Commands that render with rich import it
themselves (tests/test_cli_status.py, tests/test_cli_plan.py check their output).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.configs import config_text


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")


def test_rotate_now_off_a_terminal_imports_logging_and_http_but_not_rich(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text() + f'database: {{url: "{migrated_sqlite_url}"}}\n')
    script = textwrap.dedent(
        f"""
        import sys
        from rotator.cli import main
        try:
            main(["rotate", "now", "--all", "--dry-run", "-c", {str(config)!r}])
        except SystemExit as exit:
            code = exit.code
        loaded = {{"structlog", "httpx", "sqlalchemy", "rich", "pygments", "attr"}}
        print("exit", code, "loaded", sorted(loaded & set(sys.modules)))
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert "web" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("loaded ['httpx', 'sqlalchemy', 'structlog']")


def test_a_command_leaves_its_objects_out_of_the_shutdown_garbage_collection(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    # At exit the interpreter would run the cyclic collector over every object the libraries
    # made (a fifth of a short `rotate now`'s CPU); the operating system frees the memory
    # anyway. Checked from an exit handler that runs after rotator's (they run last-in,
    # first-out): by then the objects are frozen, i.e. exempt from that collection.
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text() + f'database: {{url: "{migrated_sqlite_url}"}}\n')
    script = textwrap.dedent(
        f"""
        import atexit, gc, os
        atexit.register(lambda: os.write(1, f"frozen {{gc.get_freeze_count() > 0}}".encode()))
        from rotator.cli import main
        main(["rotate", "now", "--all", "--dry-run", "-c", {str(config)!r}])
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert "web" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("frozen True")
