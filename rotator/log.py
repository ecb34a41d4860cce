"""Structured logging (structlog): JSON lines off a TTY, readable lines on one.

The standard library's loggers (APScheduler, httpx, hvac, alembic) are routed
through the same processors and renderer, so every line has one format.

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
from contextlib import AbstractContextManager
from typing import Any, TextIO

from rotator.secret import REDACTED, Secret, scrub

# structlog imports rich (and through it pygments and attrs: tens of milliseconds of every
# command's start) only for its rich exception formatter, which never runs here:
# ``format_exc_info`` turns an exception into text before the renderer sees it, so lines look
# the same either way. rich is hidden while structlog loads (a ``None`` entry in sys.modules
# makes an import of it fail); commands that print rich tables or progress bars import rich
# themselves afterwards, unaffected.
_rich_was_loaded = "rich" in sys.modules
if not _rich_was_loaded:
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import structlog
finally:
    if not _rich_was_loaded:
        del sys.modules["rich"]


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
    """Set up structlog, and route the standard library's logging through it.

    ``level``: the ``-v``/``-q`` choice if any, else ``$ROTATOR_LOG_LEVEL``, else warning on a
    terminal (logs must not bury the results) and info off one. ``json``: "not a TTY".
    """
    stream = stream or sys.stderr
    tty = stream.isatty()
    threshold = _threshold(level or os.environ.get("ROTATOR_LOG_LEVEL"), tty)
    use_json = not tty if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=tty)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # One write a line (PrintLogger writes the newline apart): a standard-library line
        # written at the same moment cannot land between a line and its newline.
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(stream, threshold, shared, renderer)


def _threshold(name: str | None, tty: bool) -> int:
    levels = logging.getLevelNamesMapping()
    chosen = (name or "").upper()
    if chosen not in levels:
        chosen = "WARNING" if tty else "INFO"
    return levels[chosen]


class _StructlogHandler(logging.StreamHandler[TextIO]):
    """The root logger's handler: APScheduler, httpx, hvac and alembic lines in our format."""


def _route_standard_logging(
    stream: TextIO, threshold: int, shared: list[Any], renderer: Any
) -> None:
    handler = _StructlogHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    # httpx logs every request at info; the providers log what matters about them.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(threshold if threshold <= logging.DEBUG else "WARNING")


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def bound_log_context(**values: Any) -> AbstractContextManager[None]:
    """Every log line written inside the block (this thread) carries ``values``."""
    return structlog.contextvars.bound_contextvars(**values)
