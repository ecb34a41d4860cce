"""Audit events carry a keyed MAC, its key version and nonce, and the row changes they record.

``key_version`` 0 marks an unkeyed event (everything before this revision, and events
written without an audit key); its ``hash`` stays the sha256 chain it always was.
``changes`` holds the ``rotations`` and ``policy_state`` values written in the event's
transaction, so ``audit verify --state`` can compare the rows with the chain. The
unique index on ``mac`` refuses a copied event outright.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEYED = sa.text("mac <> ''")


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("key_version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("nonce", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("changes", sa.JSON))
    op.create_index(
        "ux_audit_events_mac",
        "audit_events",
        ["mac"],
        unique=True,
        postgresql_where=KEYED,
        sqlite_where=KEYED,
    )


def downgrade() -> None:
    keyed = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM audit_events WHERE mac <> ''"))
    if keyed.scalar_one():
        raise RuntimeError(
            "audit events are sealed with the audit key; 0003 cannot verify them. Export the "
            "trail ('rotator audit --json') and prune it before downgrading"
        )
    op.drop_index("ux_audit_events_mac", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("changes")
        batch.drop_column("mac")
        batch.drop_column("nonce")
        batch.drop_column("key_version")


downgrade_destroys = (
    "every event's MAC, key version and recorded row changes (refused while keyed events exist)"
)
