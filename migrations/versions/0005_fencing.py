"""Fencing: a rotation row names the process working on it; one unfinished rotation per policy.

A process whose policy lock was lost (its database session ended) must not
overwrite the work of the process that took the policy over. Every update of a
rotation names the ``fence`` it last saw; taking a rotation over bumps it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNFINISHED = sa.text("state NOT IN ('completed', 'rolled_back', 'abandoned')")


def upgrade() -> None:
    with op.batch_alter_table("rotations") as batch:
        batch.add_column(sa.Column("fence", sa.Integer, nullable=False, server_default="0"))
    op.create_index(
        "ix_rotations_one_unfinished",
        "rotations",
        ["policy"],
        unique=True,
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_rotations_one_unfinished", table_name="rotations")
    with op.batch_alter_table("rotations") as batch:
        batch.drop_column("fence")


downgrade_destroys = "each rotation's fence (which process may write it)"
