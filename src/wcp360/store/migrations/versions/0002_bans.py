"""bans

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wcp360.store.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bans",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("network", sa.String(length=43), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("lifted_at", UtcDateTime(), nullable=True),
        sa.Column("lifted_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bans_active", "bans", ["network", "lifted_at"])


def downgrade() -> None:
    op.drop_index("ix_bans_active", table_name="bans")
    op.drop_table("bans")
