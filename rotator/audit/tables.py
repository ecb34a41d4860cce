"""Table definitions (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

No column holds a secret value. ``new_secret_fingerprint`` is a salted
SHA-256 of the new secret, kept only so that after a crash rotator can tell
its own Vault write from someone else's; it cannot be turned back into the
secret.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the audit store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# The predicate of the unique index migration 0005 created, word for word. 'abandoned' is
# not a State (TERMINAL_STATES): no version of rotator ever wrote it, so this selects the same
# rows as "not terminal", and rebuilding the index to drop the name would change nothing.
UNFINISHED = text("state NOT IN ('completed', 'rolled_back', 'abandoned')")

EventId = BigInteger().with_variant(Integer(), "sqlite")

rotations = Table(
    "rotations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("policy", String(200), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("emergency", Boolean, nullable=False, default=False),
    Column("old_key_id", String(200)),
    Column("new_key_id", String(200)),
    Column("new_key_name", String(200)),
    Column("new_secret_fingerprint", String(64)),
    Column("vault_path", String(500), nullable=False),
    Column("vault_field", String(200), nullable=False),
    Column("vault_base_version", Integer),
    Column("vault_version", Integer),
    Column("grace_until", UTCDateTime),
    Column("needs_attention", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    #: Bumped by each process that takes the rotation over; every update names the value it
    #: holds, so a process that lost the policy's lock finds out at its next write.
    Column("fence", Integer, nullable=False, server_default="0"),
    #: When grace began (the new key in Vault) and its first end, before any extension.
    Column("grace_started_at", UTCDateTime),
    Column("grace_original_until", UTCDateTime),
    #: The old key's call count when grace began, where the vendor counts calls.
    Column("old_key_calls_at_grace", BigInteger),
    #: Who rolled the rotation back during grace and why, and the Vault version that holds
    #: the old secret again once that write is done (``rotator rollback``).
    Column("rollback_reason", Text),
    Column("rolled_back_by", String(200)),
    Column("restored_vault_version", Integer),
    #: The earliest use of the new key the vendor reported during grace.
    Column("new_key_first_used_at", UTCDateTime),
    Index("ix_rotations_policy_state", "policy", "state"),
    Index("ix_rotations_state_next_attempt", "state", "next_attempt_at"),
    # and ix_rotations_one_unfinished, a partial index: declare_partial_indexes() below.
)

policy_state = Table(
    "policy_state",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("current_key_id", String(200)),
    Column("vault_version", Integer),
    Column("last_rotated_at", UTCDateTime),
    Column("last_rotation_id", String(32)),
    Column("adopted_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    #: Why the policy waits for a person (drift found by plan/reconcile); None when fine.
    Column("attention", Text),
)

#: Operators' holds on policies (``rotator pause``); a row is deleted on resume.
policy_pauses = Table(
    "policy_pauses",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("paused_by", String(200), nullable=False),
    Column("paused_at", UTCDateTime, nullable=False),
    Column("until", UTCDateTime),
)

#: One row: the newest sealed event's hash and position. The sealer locks it, which orders
#: the chain; rotations never wait on it.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_hash", String(64), nullable=False),
    Column("last_seq", EventId, nullable=False, server_default="0"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("policy", String(200), nullable=False),
    Column("rotation_id", String(32)),
    Column("step", String(40), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("details", JSON, nullable=False),
    # The rotations / policy_state values written in the event's transaction (audit verify --state).
    Column("changes", JSON(none_as_null=True)),
    # Tamper evidence (rotator/audit/chain.py): the writer's MAC over the content, with the
    # audit key's version (0: unkeyed) and a nonce; the chain ``hash`` links it in seq order.
    # An event is written unsealed (seq NULL, empty hashes) and sealed just after it commits.
    Column("key_version", Integer, nullable=False, server_default="0"),
    Column("nonce", String(32), nullable=False, server_default=""),
    Column("mac", String(64), nullable=False, server_default=""),
    Column("seq", EventId),
    Column("prev_hash", String(64), nullable=False, server_default=""),
    Column("hash", String(64), nullable=False, server_default=""),
    Index("ix_audit_events_seq", "seq", unique=True),
    Index("ix_audit_events_policy_id", "policy", "id"),
    Index("ix_audit_events_rotation_id", "rotation_id"),
    Index("ix_audit_events_at", "at"),
    # and the partial ux_audit_events_mac and ix_audit_events_unsealed: declare_partial_indexes().
)


@functools.cache
def declare_partial_indexes() -> None:
    """Add the partial indexes (those with a WHERE clause) to ``metadata``, once per process.

    The migrations create them (0003, 0004, 0005); Alembic compares ``metadata`` with the
    schema, so they are declared before it runs (``rotator.audit.migrations``). Not at
    import: a dialect's option (``postgresql_where``, ``sqlite_where``) makes SQLAlchemy
    import that dialect, so every process would import both while queries never read an
    index's definition.
    """
    for index, column, where, unique in (
        # At most one unfinished rotation per policy, whatever a process that lost its lock does.
        ("ix_rotations_one_unfinished", rotations.c.policy, UNFINISHED, True),
        ("ux_audit_events_mac", audit_events.c.mac, text("mac <> ''"), True),
        ("ix_audit_events_unsealed", audit_events.c.id, text("seq IS NULL"), False),
    ):
        Index(index, column, unique=unique, postgresql_where=where, sqlite_where=where)
