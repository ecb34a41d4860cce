"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from rotator.audit.store import AuditStore
    from rotator.config.loader import Config

F = TypeVar("F", bound=Callable[..., Any])


def config_option(function: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        envvar="ROTATOR_CONFIG",
        default=None,
        help="Configuration file (default: $ROTATOR_CONFIG, else ./rotator.yaml).",
    )(function)


@dataclass(frozen=True)
class Verbosity:
    """The global ``-v``/``-q`` choice: the log level, and whether only failures are printed."""

    log_level: str | None = None
    quiet: bool = False


def verbosity() -> Verbosity:
    context = click.get_current_context(silent=True)
    chosen = context.find_root().obj if context is not None else None
    return chosen if isinstance(chosen, Verbosity) else Verbosity()


@contextmanager
def start_up() -> Iterator[None]:
    """Run a command's start-up (imports, configuration, connections) with the cyclic garbage
    collector off, then leave what it made out of every later collection.

    A start-up makes about 90,000 objects the collector tracks, nearly all of them living as
    long as the process (modules, classes, the configuration): while they pile up the
    collector traverses them again and again, about 5% of the CPU of a `rotate now` or a
    CronJob's `rotate due`. Frozen, they are skipped from then on; the price is that a
    reference cycle start-up dropped is not freed before the command ends (a bounded, one-off
    amount). ``main`` unfreezes them when the command ends, for callers that carry on in the
    same process (tests).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def setup_logging() -> None:
    """Logging at the level ``-v``/``-q`` chose (else ``$ROTATOR_LOG_LEVEL``, else the default)."""
    from rotator.log import configure_logging

    configure_logging(level=verbosity().log_level)


def load(config_path: str | None) -> Config:
    """Set up logging, then load and check the configuration."""
    setup_logging()
    return read_config(config_path)


def read_config(config_path: str | None) -> Config:
    """Load and check the configuration only: logging (structlog, rich) is not imported."""
    from rotator.config.loader import load_config, resolve_config_path
    from rotator.providers.registry import provider_class

    return load_config(resolve_config_path(config_path), provider_class)


def complete_policies(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion: the policy names of the configuration, in file order."""
    from click.shell_completion import CompletionItem

    from rotator.errors import RotatorError

    try:
        names = list(read_config(ctx.params.get("config_path")).policies)
    except RotatorError:
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def open_store(config: Config) -> AuditStore:
    """The audit store, keyed when ``audit.key_path`` is set (Vault is reached on first use)."""
    from rotator.audit.store import AuditStore
    from rotator.chain_vault import chain_trust

    return AuditStore.open(config.database_url, trust=chain_trust(config))
