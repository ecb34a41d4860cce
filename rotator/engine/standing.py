"""Where each policy stands, read from the database only, for ``rotator status``.

Besides the current key and when it is next due, a standing lists every reason
the policy will not rotate on its schedule: a flag for attention (on the
policy, set by ``reconcile --apply``, or on a rotation that ran out of
attempts), a retry waiting for its backoff, another process holding the
policy's lock, and a hold (``rotator pause``, ``enabled: false``). While a
rotation waits in grace, the key in Vault is already the new one, so its age,
the last rotation and the next due time follow that rotation rather than the
policy's previous one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from rotator.audit.records import PolicyState
from rotator.audit.store import AuditStore, RotationRecord
from rotator.config.loader import Policy
from rotator.engine.lock import PolicyLocks
from rotator.engine.pause import DISABLED, hold_reason
from rotator.engine.schedule import NEVER_ROTATED, next_due
from rotator.timestamps import format_time
from rotator.vocabulary import State


@dataclass(frozen=True)
class Standing:
    policy: str
    provider: str
    strategy: str
    current_key_id: str | None
    key_since: datetime | None
    last_rotated_at: datetime | None
    last_outcome: State | None
    #: None when the policy is due now (never rotated nor adopted).
    next_due: datetime | None
    in_flight: State | None = None
    rotation_id: str | None = None
    grace_until: datetime | None = None
    attention: str | None = None
    attention_since: datetime | None = None
    retry_at: datetime | None = None
    attempts: int | None = None
    max_attempts: int | None = None
    lock_held: bool = False
    last_error: str | None = None
    #: Why the policy is held (paused by an operator, or ``enabled: false``); None if not.
    paused: str | None = None
    #: The new key's earliest use the vendor reported while its rotation is in grace.
    new_key_first_used_at: datetime | None = None
    #: Every reason the policy will not rotate on schedule, in words.
    blockers: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return self.attention is not None


def standing(
    store: AuditStore,
    locks: PolicyLocks,
    policy: Policy,
    now: datetime,
    *,
    max_attempts: int,
) -> Standing:
    """``policy``'s standing as of ``now``."""
    name = policy.name
    # One statement: the state, the unfinished rotation and the pause agree with each other
    # even while a rotation moves on.
    rows = store.policy_rows(name)
    state, active = rows.state, rows.active
    history = store.rotations_for(name)
    last = history[-1] if history else None
    current_key = state.current_key_id if state else None
    key_since = state and (state.last_rotated_at or state.adopted_at)
    last_rotated = state.last_rotated_at if state else None
    schedule_state = state
    if active is not None and active.state.serves_new_key:
        current_key, key_since = active.new_key_id, active.updated_at
        if active.state == State.GRACE:
            key_since = _grace_started(active)
            last_rotated = key_since
            # The rotation finishes when grace ends; the schedule counts from then.
            schedule_state = _as_finished(state, name, active)
    due = next_due(name, policy.schedule, schedule_state, now)
    result = Standing(
        policy=name,
        provider=policy.provider_name,
        strategy=policy.strategy.value,
        current_key_id=current_key,
        key_since=key_since or None,
        last_rotated_at=last_rotated,
        last_outcome=last.state if last else None,
        next_due=None if due == NEVER_ROTATED else due,
        in_flight=active.state if active else None,
        rotation_id=active.id if active else None,
        grace_until=active.grace_until if active else None,
        new_key_first_used_at=active.new_key_first_used_at if active else None,
        lock_held=locks.held_elsewhere(name),
        last_error=last.last_error if last else None,
        max_attempts=max_attempts,
        paused=hold_reason(policy.enabled, rows.pause_at(now)),
    )
    return _with_blockers(store, result, state, active, now, max_attempts)


def _grace_started(active: RotationRecord) -> datetime:
    return (
        active.updated_at
        if active.grace_until is None
        else min(active.updated_at, active.grace_until)
    )


def _as_finished(state: PolicyState | None, name: str, active: RotationRecord) -> PolicyState:
    finished = active.grace_until or active.updated_at
    if state is None:
        return PolicyState(name, active.new_key_id, active.vault_version, finished, active.id, None)
    return replace(state, last_rotated_at=finished)


def _with_blockers(
    store: AuditStore,
    result: Standing,
    state: PolicyState | None,
    active: RotationRecord | None,
    now: datetime,
    max_attempts: int,
) -> Standing:
    blockers = []
    attention = since = retry_at = attempts = None
    if state is not None and state.attention:
        attention = state.attention
        since = _flagged_at(store, result.policy)
        blockers.append(
            f"needs attention since {format_time(since) if since else 'an unknown time'}: "
            f"{attention}; run 'rotator reconcile {result.policy}', then "
            f"'rotator rotate now {result.policy}'"
        )
    if active is not None:
        attempts = active.attempts
        if active.needs_attention:
            attention = attention or (
                f"rotation {active.id} stopped in state {active.state} after "
                f"{active.attempts} attempts"
            )
            since = since or active.updated_at
            blockers.append(
                f"needs attention since {format_time(active.updated_at)}: rotation {active.id} "
                f"stopped in state {active.state} after {active.attempts} attempts; fix the "
                f"cause, then run 'rotator rotate now {result.policy}'"
            )
        elif active.next_attempt_at is not None and active.next_attempt_at > now:
            retry_at = active.next_attempt_at
            blockers.append(
                f"retrying at {format_time(retry_at)} (attempt {active.attempts + 1} of "
                f"{max_attempts}) after: {active.last_error}"
            )
    if result.paused:
        undo = (
            "set enabled: true in the configuration"
            if result.paused == DISABLED
            else f"run 'rotator resume {result.policy}'"
        )
        blockers.append(f"{result.paused}; {undo} to rotate it on schedule again")
    if result.lock_held:
        blockers.append("another rotator process holds this policy's lock now")
    return replace(
        result,
        attention=attention,
        attention_since=since,
        retry_at=retry_at,
        attempts=attempts,
        blockers=blockers,
    )


def _flagged_at(store: AuditStore, policy: str) -> datetime | None:
    flagged = store.events(policy=policy, step="attention", outcome="flagged", limit=1)
    return flagged[-1].at if flagged else None
