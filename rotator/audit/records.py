"""Plain records and schema facts of the audit store, free of SQLAlchemy.

Kept apart from ``store`` so that readers which must start fast (``rotate
due`` finding nothing due, see ``snapshot``) can share them without importing
SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: The newest migration in migrations/versions. Checking the database against this constant
#: keeps Alembic out of every CLI start; a test keeps it equal to Alembic's own head.
SCHEMA_REVISION = "0005"

#: The outcomes rotator records on audit events (``audit --outcome`` checks against them).
AUDIT_OUTCOMES = (
    "started",
    "succeeded",
    "failed",
    "skipped",
    "conflict",
    "regenerate_again",
    "revoked_orphan",
    "flagged",
    "cleared",
)

#: Rotation states after which nothing more happens to that rotation.
TERMINAL_STATES = frozenset({"completed", "rolled_back", "abandoned"})


@dataclass(frozen=True)
class PolicyState:
    policy: str
    current_key_id: str | None
    vault_version: int | None
    last_rotated_at: datetime | None
    last_rotation_id: str | None
    adopted_at: datetime | None
    attention: str | None = None
