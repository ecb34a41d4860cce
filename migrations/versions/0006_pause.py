"""Policy pauses: an operator holds a policy's scheduled rotations, with a reason.

One row per paused policy; resuming deletes it, and a pause whose ``until``
has passed no longer holds. The audit trail keeps who paused and resumed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rotator.audit.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_pauses",
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("paused_by", sa.String(200), nullable=False),
        sa.Column("paused_at", UTCDateTime, nullable=False),
        sa.Column("until", UTCDateTime),
    )


downgrade_destroys = "every pause in force (paused policies rotate on schedule again)"


def downgrade() -> None:
    op.drop_table("policy_pauses")
