"""The ``rotator`` command line (click).

Heavy libraries are imported inside the commands that need them, so that
``rotator --help`` and a CronJob's ``rotator rotate due`` start quickly.
Exit codes: 0 ok, 1 a rotation or a dependency failed, 2 usage or config error.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rotator import __version__
from rotator.cli.chain import baseline, rotate_key, seal
from rotator.cli.db import db
from rotator.cli.inspect import audit
from rotator.cli.operate import reconcile
from rotator.cli.options import Verbosity, config_option, load, read_config
from rotator.cli.pause import pause, resume
from rotator.cli.plan import plan
from rotator.cli.rollback import rollback
from rotator.cli.rotate import adopt, rotate
from rotator.cli.sandbox import sandbox
from rotator.cli.status import status
from rotator.errors import RotatorError
from rotator.secret import scrub

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rotator")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more: -v info, -vv debug (default: warning on a terminal, info off one, "
    "or $ROTATOR_LOG_LEVEL).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only failures; log only errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Rotate third-party API keys on a schedule, safely, into Vault.

    Logs go to stderr: JSON lines off a terminal, readable lines on one.
    """
    if quiet and verbose:
        raise click.UsageError("-q and -v contradict each other; pass one")
    level = "error" if quiet else {0: None, 1: "info"}.get(verbose, "debug")
    ctx.obj = Verbosity(log_level=level, quiet=quiet)


@cli.command()
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also check credentials, provider tokens, Vault access and the database schema.",
)
def validate(config_path: str | None, online: bool) -> None:
    """Check the configuration file; exit 2 on any problem."""
    # Offline, nothing is logged: logging (structlog, which imports rich) is set up for --online.
    config = load(config_path) if online else read_config(config_path)
    for warning in config.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(
        f"{config.source}: OK ({len(config.providers)} providers, {len(config.policies)} policies)"
    )
    from rotator.providers.registry import provider_origin

    for type_name in sorted({settings.type for settings in config.providers.values()}):
        origin = provider_origin(type_name)
        if not origin.builtin:
            click.echo(f"provider plugin {type_name}: {origin}")
    if online:
        from rotator.cli.operate import online_checks

        if not online_checks(config_path):
            sys.exit(2)


for command in (
    db,
    rotate,
    adopt,
    plan,
    status,
    audit,
    reconcile,
    sandbox,
    pause,
    resume,
    rollback,
):
    cli.add_command(command)
for command in (seal, baseline, rotate_key):
    audit.add_command(command)


@cli.command()
@config_option
def daemon(config_path: str | None) -> None:
    """Run continuously: rotate on schedule, serve /healthz, /readyz and /metrics.

    Refuses to start on an out-of-date database schema ('rotator db upgrade').
    SIGHUP reloads the configuration; SIGTERM stops gracefully.
    """
    from rotator.config.loader import resolve_config_path
    from rotator.log import get_logger

    config = load(config_path)
    # Imported once the configuration is checked: the parse's freed temporaries are then
    # reused by the scheduler's, the database's and Vault's libraries instead of adding to
    # the RSS the daemon keeps (about 10 MB at 10,000 policies).
    from rotator.scheduler import Daemon

    for warning in config.warnings:
        get_logger("rotator.daemon").warning("configuration warning", warning=warning)
    sys.exit(Daemon(resolve_config_path(config_path), config).run())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the CLI and turns ``RotatorError`` into an exit code."""
    # httpx imports its own command line (``httpx._main``, which loads rich, pygments and click
    # parts) when httpx is imported, if it can; this process never runs it, and a ``None`` in
    # sys.modules makes httpx fall back to its stub, sparing every command that start-up cost.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # At exit the interpreter runs the cyclic garbage collector over every object still alive,
    # most of them made by the libraries' imports: about 0.1 s of CPU, a fifth of a short
    # `rotate now` or CronJob run, to free memory the operating system reclaims anyway. Frozen
    # objects are exempt. This runs after the command and its own clean-up (connections are
    # closed explicitly, log handlers flushed by logging's exit handler); an object in a
    # reference cycle is then not finalised, which Python never promises at exit anyway.
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process (tests)
    atexit.register(gc.freeze)
    try:
        cli.main(args=argv, prog_name="rotator", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RotatorError as exc:
        click.secho(f"error: {scrub(str(exc))}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    finally:
        # What a command's start-up froze (``options.start_up``) is collectable again for a
        # caller that carries on; a process that exits freezes everything again (above).
        gc.unfreeze()
