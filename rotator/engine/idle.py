"""Deciding, without opening the engine, that ``rotate due`` has nothing to do.

The same rule as the engine's scheduled run (``Engine.rotate_if_due``), read
from a plain snapshot of committed state: a policy is idle when it has no
unfinished rotation and is either held (paused, ``enabled: false``) or has
no flag for attention and a due window that does not contain now. Only when
every policy is idle does the answer stand; anything
else (a rotation to resume, a policy due or never rotated, a schema that
does not match, a database the snapshot cannot read) returns None and the
engine decides, under each policy's lock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rotator.audit.records import SCHEMA_REVISION
from rotator.audit.snapshot import read_snapshot
from rotator.config.loader import Config
from rotator.engine.pause import held, hold_reason
from rotator.engine.schedule import due_window, not_due
from rotator.vocabulary import Outcome


def idle_outcomes(config: Config, now: datetime | None = None) -> list[Outcome] | None:
    """A ``not_due`` outcome per policy if none has anything to do now; else None."""
    now = now or datetime.now(UTC)
    snapshot = read_snapshot(config.database_url)
    if snapshot is None or snapshot.revision != SCHEMA_REVISION:
        return None
    outcomes = []
    for name in config.policies:
        state = snapshot.states.get(name)
        if name in snapshot.unfinished:
            return None
        pause = snapshot.pauses.get(name)
        reason = hold_reason(
            config.policies[name].enabled, pause if pause and pause.holds_at(now) else None
        )
        if reason is not None:
            outcomes.append(held(name, reason))
            continue
        if state is None or state.attention:
            return None
        window = due_window(name, config.policies[name].schedule, state, now)
        if window.contains(now):
            return None
        outcomes.append(not_due(name, window))
    return outcomes
