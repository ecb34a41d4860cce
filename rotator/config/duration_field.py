"""The pydantic field type for a configured duration (``30d``, ``24h``, ``1h30m``).

Kept apart from ``rotator.durations`` so that reading and printing durations (``plan``,
``status``, ``audit --since``, and ``--help`` of the commands that have such options)
does not import pydantic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

from rotator.durations import parse_duration


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a duration string such as '24h', '30d' or '10m'")
    return parse_duration(value)


#: A pydantic field type for a duration written as ``parse_duration`` reads it.
Duration = Annotated[timedelta, BeforeValidator(_duration)]
