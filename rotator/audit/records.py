"""Plain records and schema facts of the audit store, free of SQLAlchemy.

Kept apart from ``store`` so that readers which must start fast (``rotate
due`` finding nothing due, see ``snapshot``) can share them without importing
SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

#: The newest migration in migrations/versions. Checking the database against this constant
#: keeps Alembic out of every CLI start; a test keeps it equal to Alembic's own head.
SCHEMA_REVISION = "0008_rollback"

#: The step an audit event records: a protocol step, or an operator's or the chain's action.
Step = Literal[
    "plan",
    "mint",
    "stage",
    "store",
    "verify",
    "grace",
    "revoke",
    "rollback",
    "restore",
    "finish",
    "recover",
    "retry",
    "attention",
    "emergency",
    "fence",
    "hook",
    "reconcile",
    "adopt",
    "pause",
    "resume",
    "state",
    "baseline",
    "prune",
]

#: What came of a step: every outcome rotator writes (the type checker holds writers to it).
EventOutcome = Literal[
    "started",
    "succeeded",
    "failed",
    "skipped",
    "regenerate_again",
    "revoked_orphan",
    "flagged",
    "cleared",
    "overridden",
    "claimed",
    "lost_lock",
    "changed",
    "extended",
    "held",
    "recorded",
    "requested",
    "first_used",
]

#: The outcomes ``audit --outcome`` accepts: every one written now, and ``conflict``, which
#: earlier versions wrote when a check-and-set write to Vault failed (older trails hold it).
AUDIT_OUTCOMES: tuple[str, ...] = (*get_args(EventOutcome), "conflict")


@dataclass(frozen=True, slots=True)
class PolicyState:
    policy: str
    current_key_id: str | None
    vault_version: int | None
    last_rotated_at: datetime | None
    last_rotation_id: str | None
    adopted_at: datetime | None
    attention: str | None = None


@dataclass(frozen=True)
class Pause:
    """An operator's hold on a policy: no rotation starts on schedule while it lasts."""

    policy: str
    reason: str
    paused_by: str
    paused_at: datetime
    until: datetime | None

    def holds_at(self, now: datetime) -> bool:
        """Whether the pause is in force at ``now``: one with an ``until`` ends by itself."""
        return self.until is None or now < self.until
