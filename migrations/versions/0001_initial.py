"""Rotations, per-policy state and the audit event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rotator.audit.tables import EventId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rotations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("emergency", sa.Boolean, nullable=False),
        sa.Column("old_key_id", sa.String(200)),
        sa.Column("new_key_id", sa.String(200)),
        sa.Column("new_key_name", sa.String(200)),
        sa.Column("new_secret_fingerprint", sa.String(64)),
        sa.Column("vault_path", sa.String(500), nullable=False),
        sa.Column("vault_field", sa.String(200), nullable=False),
        sa.Column("vault_base_version", sa.Integer),
        sa.Column("vault_version", sa.Integer),
        sa.Column("grace_until", UTCDateTime),
        sa.Column("needs_attention", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime),
    )
    op.create_index("ix_rotations_policy_state", "rotations", ["policy", "state"])
    op.create_index("ix_rotations_state_next_attempt", "rotations", ["state", "next_attempt_at"])
    op.create_table(
        "policy_state",
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("current_key_id", sa.String(200)),
        sa.Column("vault_version", sa.Integer),
        sa.Column("last_rotated_at", UTCDateTime),
        sa.Column("last_rotation_id", sa.String(32)),
        sa.Column("adopted_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("rotation_id", sa.String(32)),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_events_policy_id", "audit_events", ["policy", "id"])
    op.create_index("ix_audit_events_rotation_id", "audit_events", ["rotation_id"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])


#: What reverting this revision deletes; ``rotator db downgrade`` asks for --force first.
downgrade_destroys = "every rotation, policy state and audit event (the tables are dropped)"


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("policy_state")
    op.drop_table("rotations")
