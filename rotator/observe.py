"""What the daemon's scrape-time gauges say, read from the audit database and the configuration.

One ``read`` per scrape: a few queries, however many policies there are. Times
follow the same rules as the scheduler (``engine.schedule``), so the next due
time on the dashboard is the time the daemon will act.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from rotator.audit.records import PolicyState
from rotator.audit.store import RotationRecord
from rotator.config.loader import Policy
from rotator.config.model import ScheduleConfig
from rotator.engine.engine import Engine
from rotator.engine.schedule import NEVER_ROTATED, due_window, next_fire
from rotator.errors import AuditStoreError
from rotator.log import get_logger
from rotator.metrics import PolicyReading, Reading
from rotator.vocabulary import State

log = get_logger("rotator.metrics")


def read(engine: Engine, ready: Callable[[], dict[str, bool]], now: datetime) -> Reading:
    """The gauges' values for every configured policy of ``engine``, as of ``now``.

    With the database down only the readiness checks are reported (the database one at 0),
    so a scrape still succeeds, the counters stay visible and the alert on readiness fires.
    """
    checks = ready()
    store = engine.store
    try:
        states = store.all_policy_states()
        active = {r.policy: r for r in store.unfinished_rotations()}
        unsealed, oldest = store.unsealed_backlog()
    except AuditStoreError as exc:
        log.warning("metrics: the audit database cannot be read", error=str(exc))
        return Reading(policies=[], ready=checks, unsealed_events=None, oldest_unsealed=None)
    return Reading(
        policies=[
            _policy(policy, states.get(name), active.get(name), now)
            for name, policy in engine.config.policies.items()
        ],
        ready=checks,
        unsealed_events=unsealed,
        oldest_unsealed=oldest,
    )


def interval(schedule: ScheduleConfig, now: datetime) -> timedelta:
    """The schedule's period: ``every``, or the gap between the next two cron fires."""
    if schedule.every is not None:
        return schedule.every
    first = next_fire(schedule, now)
    return next_fire(schedule, first) - first


def _policy(
    policy: Policy, state: PolicyState | None, active: RotationRecord | None, now: datetime
) -> PolicyReading:
    schedule = policy.schedule
    key_since = state and (state.last_rotated_at or state.adopted_at)
    next_due = due_window(policy.name, schedule, state, now).start
    if next_due == NEVER_ROTATED:
        next_due = now  # due at once
    grace_until = None
    old_key_in_use = False
    if active is not None and active.state == State.GRACE and active.grace_until:
        # The new key is in Vault since grace began; the schedule counts from its end.
        grace_until = active.grace_until
        key_since = active.grace_started_at or grace_until - policy.grace_period
        next_due = next_fire(schedule, grace_until)
        original = active.grace_original_until
        old_key_in_use = original is not None and grace_until > original
    attention = bool(state and state.attention) or bool(active and active.needs_attention)
    return PolicyReading(
        policy=policy.name,
        key_since=key_since or None,
        last_success=state.last_rotated_at if state else None,
        next_due=next_due,
        interval_seconds=interval(schedule, now).total_seconds(),
        window_seconds=schedule.window.total_seconds() if schedule.window else 0.0,
        grace_until=grace_until,
        needs_attention=attention,
        old_key_in_use=old_key_in_use,
    )
