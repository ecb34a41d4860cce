"""How rotator writes and reads points in time for people and for machines.

One format everywhere a time is shown: ISO 8601 in UTC, whole seconds, a
``Z`` (``2026-11-26T10:06:19Z``). Command options that take a time accept
that, any ISO date or datetime, or a duration meaning "that long ago"
(``90m``, ``1h``, ``7d``), parsed by ``rotator.durations``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rotator.durations import parse_duration


def format_time(value: datetime) -> str:
    """``value`` as ISO 8601 UTC with whole seconds and a ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_or_age(text: str, now: datetime) -> datetime:
    """An ISO date/datetime (UTC unless it says otherwise), or a duration before ``now``.

    Raise ``ValueError`` naming both accepted forms.
    """
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now - parse_duration(value)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a time nor a duration: write an ISO date or datetime "
                "('2026-11-26', '2026-11-26T10:00:00Z') or how long ago ('90m', '1h', '7d')"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
