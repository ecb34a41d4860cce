"""Parsing of human durations such as ``30d``, ``24h``, ``1h30m`` or ``90s``.

The pydantic field type built on it is ``rotator.config.duration_field.Duration``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+[wdhms])+")


# Policy files repeat a handful of spellings across thousands of policies.
@lru_cache(maxsize=256)
def parse_duration(text: str) -> timedelta:
    """Return the duration ``text`` names; raise ``ValueError`` with the accepted forms."""
    compact = text.strip().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, "
            "e.g. '90s', '10m', '24h', '30d', '2w' or '1h30m'"
        )
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _PART.findall(compact)))


def format_duration(delta: timedelta) -> str:
    """The shortest ``parse_duration`` spelling of ``delta`` (whole seconds)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_setting(delta: timedelta) -> str:
    """A configured duration the way people write it: one number in the largest unit that
    divides it exactly (``30d``, not ``4w2d``; ``90m``; ``36h``)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    for unit, size in _UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")
