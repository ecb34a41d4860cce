"""Audit events are sealed into the hash chain after they commit, in ``seq`` order.

Until 0002 every event took the chain head's row lock inside its own
transaction, which serialised every rotation step across the database. From
0003 an event is inserted unsealed (``seq`` NULL) and a sealer assigns chain
positions in batches. Events chained so far were chained in id order, so they
keep that order as their ``seq``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNSEALED = sa.text("seq IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", Seq))
    op.execute("UPDATE audit_events SET seq = id")
    op.create_index("ix_audit_events_seq", "audit_events", ["seq"], unique=True)
    op.create_index(
        "ix_audit_events_unsealed",
        "audit_events",
        ["id"],
        postgresql_where=UNSEALED,
        sqlite_where=UNSEALED,
    )
    with op.batch_alter_table("audit_chain_head") as batch:
        batch.add_column(sa.Column("last_seq", Seq, nullable=False, server_default="0"))
    op.execute(
        "UPDATE audit_chain_head SET last_seq = (SELECT COALESCE(MAX(id), 0) FROM audit_events)"
    )


#: What reverting this revision deletes; ``rotator db downgrade`` asks for --force first.
downgrade_destroys = "every audit event's chain position (seq)"


def downgrade() -> None:
    # 0002 has no notion of an unsealed event; audit rows are never deleted to get there.
    unsealed = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM audit_events WHERE seq IS NULL"))
    if unsealed.scalar_one():
        raise RuntimeError(
            "audit events are waiting to be sealed: run `rotator audit seal` and downgrade again"
        )
    with op.batch_alter_table("audit_chain_head") as batch:
        batch.drop_column("last_seq")
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    op.drop_index("ix_audit_events_seq", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("seq")
