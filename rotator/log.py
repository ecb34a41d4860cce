"""Structured logging (structlog): JSON lines off a TTY, readable lines on one.

The ``redact_secrets`` processor runs last before rendering: a ``Secret`` is
rendered as its redaction marker by construction, and any other value that
contains a live ``Secret`` in any of its shapes (an exception message from a
library, bytes, a dict key, an object's repr) is scrubbed too.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from rotator.secret import REDACTED, Secret, scrub


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no secret value survives into the rendered line."""
    return {key: _redact(value) for key, value in event_dict.items()}


def _redact(value: Any) -> Any:
    if isinstance(value, Secret):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes | bytearray):
        return scrub(bytes(value).decode("utf-8", errors="backslashreplace"))
    if isinstance(value, dict):
        return {_redact(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    # Renderers fall back to repr (or str) for other objects: check what they would print.
    try:
        shown, plain = repr(value), str(value)
    except Exception:  # a broken __repr__ must not break logging
        return f"<{type(value).__name__}: unprintable>"
    if scrub(shown) != shown or scrub(plain) != plain:
        return scrub(shown)
    return value


def configure_logging(
    *, level: str | None = None, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog once per process.

    ``level`` defaults to ``$ROTATOR_LOG_LEVEL`` or info; ``json`` to "not a TTY".
    """
    level = level or os.environ.get("ROTATOR_LOG_LEVEL", "info")
    if level.upper() not in logging.getLevelNamesMapping():
        level = "info"
    stream = stream or sys.stderr
    use_json = not stream.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
