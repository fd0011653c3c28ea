"""a module's compile state: compiling -> ready | failed, with its time and its error

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wcp360.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("modules") as batch:
        # Modules stored before compile states existed were compiled on their first run: ready.
        batch.add_column(sa.Column("compile_state", sa.String(length=16), nullable=False, server_default="ready"))
        batch.add_column(sa.Column("compile_started_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("compile_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("compile_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("modules") as batch:
        batch.drop_column("compile_error")
        batch.drop_column("compile_seconds")
        batch.drop_column("compile_started_at")
        batch.drop_column("compile_state")
