"""When a policy is next due, computed from the audit database, never from memory."""

from __future__ import annotations

from datetime import UTC, datetime

from rotator.audit.store import PolicyState
from rotator.config.model import ScheduleConfig

NEVER_ROTATED = datetime.min.replace(tzinfo=UTC)


def next_due(schedule: ScheduleConfig, state: PolicyState | None) -> datetime:
    """The time the next rotation is due; a policy never rotated nor adopted is due at once."""
    base = state and (state.last_rotated_at or state.adopted_at)
    if not base:
        return NEVER_ROTATED
    if schedule.every is not None:
        return base + schedule.every
    from croniter import croniter

    assert schedule.cron is not None
    following: datetime = croniter(schedule.cron, base).get_next(datetime)
    return following
