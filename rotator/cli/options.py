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
    """Set up logging, then load and check the configuration."""
    from rotator.log import configure_logging

    configure_logging()
    return read_config(config_path)


def read_config(config_path: str | None) -> Config:
    """Load and check the configuration only: logging (structlog, rich) is not imported."""
    from rotator.config.loader import load_config, resolve_config_path
    from rotator.providers.registry import provider_class

    return load_config(resolve_config_path(config_path), provider_class)


def open_store(config: Config) -> AuditStore:
    from rotator.audit.store import AuditStore

    return AuditStore.open(config.database_url)
