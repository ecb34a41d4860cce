"""``rotator ARGS`` run in the test's own process, as the console script would run it.

Most CLI tests check what a command prints, its exit code and what it changed, none of
which needs a new Python process: starting one (and importing rotator in it) cost about a
second per call. ``invoke`` runs the console script's entry point (``rotator.cli.main``,
so ``RotatorError`` and click errors become exit codes exactly as for a user) inside
click's ``CliRunner`` isolation: its own stdin, stdout, stderr and environment. Logging,
which each command sets up on the stderr it finds, is put back afterwards.

Tests where the process boundary is the point (kill -9, signals, a terminal, the console
script's exit, a secret that must not leak from a process that never held it as a
``Secret``, an installed plugin on ``PYTHONPATH``) use ``Rig.run_process`` (exec'd) or
``Rig.spawn`` (forked from a process that has imported rotator: tests/support/forkserver.py)
instead.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import structlog
from click.testing import CliRunner

from rotator.cli import main

#: Loggers whose level a command sets (``rotator.log``); restored after each command.
_LOGGERS = ("", "httpx", "httpcore")


def invoke(
    args: Sequence[str], env: Mapping[str, str | None], *, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``rotator ARGS`` with ``env`` over this process's environment, ``stdin`` typed in;
    never raises."""
    with _logging_restored(), CliRunner().isolation(stdin, env=env) as (stdout, stderr, _):
        code = 0
        try:
            main(list(args))
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except Exception:
            # What the interpreter does with an uncaught exception: a traceback, exit 1.
            traceback.print_exc()
            code = 1
        return subprocess.CompletedProcess(
            ["rotator", *args],
            code,
            stdout.getvalue().decode(),
            stderr.getvalue().decode(errors="backslashreplace"),
        )


def _exit_code(code: object) -> int:
    """The interpreter's rule: None is 0, an int is itself, anything else is printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextmanager
def _logging_restored() -> Iterator[None]:
    """Logging as it was: a command's handlers write to streams closed when it ends."""
    config = structlog.get_config()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    try:
        yield
    finally:
        structlog.configure(**config)
        for logger, handlers, level in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
