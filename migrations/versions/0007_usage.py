"""Usage-aware revoke: a rotation remembers when its grace began and was first meant to end.

``grace_until`` moves when the old key is still in use at the end of grace;
``grace_original_until`` keeps the first end, from which ``max_extension`` is
measured, and ``grace_started_at`` when the new key was in Vault, since which a
use of the old key counts as a consumer that has not moved;
``old_key_calls_at_grace`` is the old key's call count then (vendors that count
calls), so an extension can say how many came since.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rotator.audit.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rotations") as batch:
        batch.add_column(sa.Column("grace_started_at", UTCDateTime))
        batch.add_column(sa.Column("grace_original_until", UTCDateTime))
        batch.add_column(sa.Column("old_key_calls_at_grace", sa.BigInteger))


downgrade_destroys = (
    "when each rotation's grace began and first ended, and the old key's call count then (an "
    "extended grace is then measured from its current end)"
)


def downgrade() -> None:
    with op.batch_alter_table("rotations") as batch:
        batch.drop_column("old_key_calls_at_grace")
        batch.drop_column("grace_original_until")
        batch.drop_column("grace_started_at")
