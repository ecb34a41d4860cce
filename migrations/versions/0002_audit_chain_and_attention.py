"""Hash chain over audit events; a policy-level attention flag for drift.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=False, server_default=""))
    with op.batch_alter_table("policy_state") as batch:
        batch.add_column(sa.Column("attention", sa.Text))
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.execute("INSERT INTO audit_chain_head (id, last_hash) VALUES (1, '')")


#: What reverting this revision deletes; ``rotator db downgrade`` asks for --force first.
downgrade_destroys = "the audit hash chain (every event's hashes) and policies' attention flags"


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("policy_state") as batch:
        batch.drop_column("attention")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
