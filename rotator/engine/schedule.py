"""When a policy is next due, computed from the audit database, never from memory.

The schedule's next fire after the last completed rotation or the adoption
of an existing key, whichever is later (``rotator rollback`` re-adopts the old
key), is when a policy is due (cron expressions read in UTC, or
in the schedule's ``timezone``); a policy never rotated nor
adopted is due at once. ``window`` limits rotation to that long after each
fire (a missed window waits for the next fire), and ``jitter`` delays each
fire by a fixed per-policy amount, so every process computes the same time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rotator.audit.records import PolicyState
from rotator.config.model import ScheduleConfig
from rotator.timestamps import format_time
from rotator.vocabulary import Outcome, Result

NEVER_ROTATED = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DueWindow:
    """The next time a policy may rotate: from ``start`` until ``end`` (None: no end)."""

    start: datetime
    end: datetime | None

    def contains(self, now: datetime) -> bool:
        return self.start <= now and (self.end is None or now < self.end)


def next_fire(schedule: ScheduleConfig, after: datetime) -> datetime:
    """The schedule's first fire strictly after ``after``."""
    if schedule.every is not None:
        return after + schedule.every
    from zoneinfo import ZoneInfo

    from croniter import croniter

    assert schedule.cron is not None
    # croniter reads the expression in the zone of its start time; the answer is kept in UTC.
    zone = ZoneInfo(schedule.timezone or "UTC")
    fire: datetime = croniter(schedule.cron, after.astimezone(zone)).get_next(datetime)
    return fire.astimezone(UTC)


def _jitter(policy: str, fire: datetime, jitter: timedelta | None) -> timedelta:
    if not jitter:
        return timedelta(0)
    digest = hashlib.sha256(f"{policy}@{fire.isoformat()}".encode()).digest()
    return jitter * (int.from_bytes(digest[:8], "big") / 2**64)


def due_window(
    policy: str, schedule: ScheduleConfig, state: PolicyState | None, now: datetime
) -> DueWindow:
    """The window in which ``policy`` is (or will next be) due, as of ``now``."""
    # The later of the two: a rollback re-adopts the old key, and the schedule counts from it.
    base = state and max(filter(None, (state.last_rotated_at, state.adopted_at)), default=None)
    if not base:
        return DueWindow(NEVER_ROTATED, None)
    fire = next_fire(schedule, base)
    if schedule.window is not None:
        while now >= fire + schedule.window:
            fire = next_fire(schedule, fire)
    start = fire + _jitter(policy, fire, schedule.jitter)
    end = fire + schedule.window if schedule.window is not None else None
    return DueWindow(start, end)


def next_due(
    policy: str, schedule: ScheduleConfig, state: PolicyState | None, now: datetime
) -> datetime:
    """When ``policy`` is next due (``NEVER_ROTATED``: at once)."""
    return due_window(policy, schedule, state, now).start


def not_due(policy: str, window: DueWindow) -> Outcome:
    """What a scheduled run reports for ``policy`` while ``window`` has not opened."""
    return Outcome(policy, Result.NOT_DUE, f"next due {format_time(window.start)}")
