"""Operators' holds on policies (``rotator pause`` / ``resume``) in the audit database.

A pause and its audit event are written in one transaction, so the trail
never shows a pause that did not take, nor misses one that did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select

from rotator.audit.records import Pause
from rotator.audit.store import AuditStore, utcnow
from rotator.audit.tables import policy_pauses


def pause_policy(
    store: AuditStore, policy: str, *, reason: str, by: str, until: datetime | None
) -> Pause:
    """Hold ``policy`` until ``until`` (None: until resumed); replaces an earlier pause."""
    pause = Pause(policy, reason, by, utcnow(), until)
    with store.transaction() as connection:
        connection.execute(delete(policy_pauses).where(policy_pauses.c.policy == policy))
        row = {
            "policy": policy,
            "reason": reason,
            "paused_by": by,
            "paused_at": pause.paused_at,
            "until": until,
        }
        connection.execute(insert(policy_pauses).values(row))
        # The chain records the row, so 'audit verify --state' catches a pause added,
        # edited or removed behind rotator's back (a hidden pause stops rotations).
        store.note_changes(connection, "policy_pauses", policy, row)
        store.record_event(
            policy,
            "pause",
            "succeeded",
            details={
                "reason": reason,
                "by": by,
                "until": until.isoformat() if until else None,
            },
            connection=connection,
        )
    return pause


def resume_policy(store: AuditStore, policy: str, *, by: str) -> Pause | None:
    """End ``policy``'s pause; the pause that was in force, or None if there was none."""
    now = utcnow()
    with store.transaction() as connection:
        row = connection.execute(
            delete(policy_pauses)
            .where(policy_pauses.c.policy == policy)
            .returning(*policy_pauses.c)
        ).first()
        pause = Pause(**row._asdict()) if row is not None else None
        if pause is not None:
            store.note_removal(connection, "policy_pauses", policy)
        if pause is None or not pause.holds_at(now):
            return None  # an expired pause had already ended by itself
        store.record_event(
            policy,
            "resume",
            "succeeded",
            details={"by": by, "reason": pause.reason, "paused_by": pause.paused_by},
            connection=connection,
        )
    return pause


def pauses_in_force(store: AuditStore, now: datetime) -> dict[str, Pause]:
    """Every pause that holds at ``now``, by policy."""
    with store.reading() as connection:
        rows = connection.execute(select(policy_pauses)).all()
    pauses = (Pause(**row._asdict()) for row in rows)
    return {pause.policy: pause for pause in pauses if pause.holds_at(now)}


# Built once: it is read before every rotation.
_SELECT_PAUSE = select(policy_pauses).where(policy_pauses.c.policy == bindparam("b_policy"))


def pause_in_force(store: AuditStore, policy: str, now: datetime) -> Pause | None:
    """The policy's pause, if one holds at ``now``."""
    with store.reading() as connection:
        row = connection.execute(_SELECT_PAUSE, {"b_policy": policy}).first()
    pause = Pause(**row._asdict()) if row is not None else None
    return pause if pause is not None and pause.holds_at(now) else None
