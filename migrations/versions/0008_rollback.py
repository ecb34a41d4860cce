"""Rolling back during grace, and the new key's first use.

``rollback_reason`` and ``rolled_back_by`` say who sent a rotation back to its
old key and why (``rotator rollback``); ``restored_vault_version`` is the Vault
version that holds the old secret again, set once that write is done, so a
rollback resumed after a crash does not write it twice.
``new_key_first_used_at`` is the earliest use of the new key the vendor
reported to rotator during grace (vendors that report usage).

Revision ID: 0008_rollback
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rotator.audit.tables import UTCDateTime

revision = "0008_rollback"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rotations") as batch:
        batch.add_column(sa.Column("rollback_reason", sa.Text))
        batch.add_column(sa.Column("rolled_back_by", sa.String(200)))
        batch.add_column(sa.Column("restored_vault_version", sa.Integer))
        batch.add_column(sa.Column("new_key_first_used_at", UTCDateTime))


downgrade_destroys = (
    "who rolled each rotation back and why, the Vault version each rollback restored, and "
    "when each new key was first seen in use (a rollback under way cannot resume)"
)


def downgrade() -> None:
    with op.batch_alter_table("rotations") as batch:
        batch.drop_column("new_key_first_used_at")
        batch.drop_column("restored_vault_version")
        batch.drop_column("rolled_back_by")
        batch.drop_column("rollback_reason")
