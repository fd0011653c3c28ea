"""tenants (system users made by the agent) and the accounts that belong to one

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wcp360.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# As in 0001: who acts comes from set_config(..., true) in Database.transaction.
_CURRENT_USER = "NULLIF(current_setting('app.user_id', true), '')::uuid"
_ALL_OWNERS = "coalesce(current_setting('app.all_owners', true), 'off') = 'on'"


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(length=32), nullable=False, unique=True),
        sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("gid", sa.Integer(), nullable=False),
        sa.Column("home", sa.String(length=4096), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("degraded", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("suspended_at", UtcDateTime(), nullable=True),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("tenant_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key("fk_users_tenant_id", "tenants", ["tenant_id"], ["id"], ondelete="SET NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
        # Owned, never shared: its owner (a tenant account or a reseller) and administrators.
        op.execute(
            "CREATE POLICY tenant_access_policy ON tenants FOR ALL "
            f"USING (owner_id = {_CURRENT_USER} OR {_ALL_OWNERS}) "
            f"WITH CHECK (owner_id = {_CURRENT_USER} OR {_ALL_OWNERS})"
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("fk_users_tenant_id", type_="foreignkey")
        batch.drop_column("tenant_id")
    op.drop_table("tenants")
