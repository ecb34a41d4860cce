"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
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


def load(config_path: str | None) -> Config:
    from rotator.config.loader import load_config, resolve_config_path
    from rotator.log import configure_logging

    configure_logging()
    return load_config(resolve_config_path(config_path))


def open_store(config: Config) -> AuditStore:
    from rotator.audit.store import AuditStore

    return AuditStore.open(config.database_url)
