"""Whether a policy is held (paused by an operator, or ``enabled: false``), and how that reads.

A hold stops new rotations only. A rotation already under way (storing, in
grace) still finishes, because a half-done rotation is the state the
protocol exists to leave quickly. Free of SQLAlchemy: the fast idle path of
``rotate due`` uses it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rotator.audit.records import Pause
from rotator.durations import parse_duration
from rotator.vocabulary import Outcome, Result

FORCE_HINT = "pass --force to rotate it anyway"
#: The hold of a policy with ``enabled: false``.
DISABLED = "disabled in the configuration (enabled: false)"


def hold_reason(enabled: bool, pause: Pause | None) -> str | None:
    """Why the policy is held, for people; None when it is not."""
    if not enabled:
        return DISABLED
    if pause is None:
        return None
    until = f" until {pause.until.isoformat()}" if pause.until else " until resumed"
    return (
        f"paused by {pause.paused_by} at {pause.paused_at.isoformat(timespec='seconds')}"
        f"{until}: {pause.reason}"
    )


def held(name: str, reason: str, *, hint: str = "") -> Outcome:
    """The outcome of a run that found the policy held."""
    return Outcome(name, Result.PAUSED, f"{reason}; {hint}" if hint else reason)


def parse_until(text: str, now: datetime | None = None) -> datetime:
    """``--until``: a duration from now ('2h', '3d') or an ISO 8601 time (UTC when no zone).

    Raises ``ValueError`` saying which forms are accepted, or that the time has passed.
    """
    now = now or datetime.now(UTC)
    try:
        until = now + parse_duration(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(
                f"--until {text!r} is neither a duration ('2h', '3d') nor an ISO 8601 time "
                "('2026-12-01T09:00:00+00:00')"
            ) from None
        until = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if until <= now:
        raise ValueError(f"--until {text!r} is not in the future; the pause would end at once")
    return until.astimezone(UTC)
