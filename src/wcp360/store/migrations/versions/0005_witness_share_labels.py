"""audit witness (the latest signed head, outside the log directory), share labels, run output size

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wcp360.store.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_witness",
        # One row per audit log file name (the trail's current file, e.g. audit.log).
        sa.Column("log", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("sig", sa.Text(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("log"),
    )
    with op.batch_alter_table("shares") as batch:
        # How the sharer named the grantee (a username): listings show it, and a share with a name no
        # account has looks the same as any other (no username enumeration).
        batch.add_column(sa.Column("grantee_label", sa.String(length=128), nullable=True))
    with op.batch_alter_table("runs") as batch:
        # Bytes of stdout + stderr as stored: the per-account output quota sums this column.
        batch.add_column(sa.Column("output_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_index("ix_runs_user_finished", ["user_id", "finished_at"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_user_finished")
        batch.drop_column("output_bytes")
    with op.batch_alter_table("shares") as batch:
        batch.drop_column("grantee_label")
    op.drop_table("audit_witness")
