"""run states, scheduler tasks, shares and snapshots

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wcp360.store.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# As in 0001: who acts comes from set_config(..., true) in Database.transaction; `app.grantees`
# lists the user id and `role:<name>` keys a share may name.
_CURRENT_USER = "NULLIF(current_setting('app.user_id', true), '')::uuid"
_ALL_OWNERS = "coalesce(current_setting('app.all_owners', true), 'off') = 'on'"
_GRANTEE = "grantee = ANY(string_to_array(coalesce(current_setting('app.grantees', true), ''), ','))"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("outcome", existing_type=sa.String(length=32), nullable=True)
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="finished"))
        batch.add_column(sa.Column("finished_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("task_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("scheduled_for", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("restored_from", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("snapshot_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("request", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("runner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", UtcDateTime(), nullable=True))
        batch.create_foreign_key("fk_runs_task_id", "tasks", ["task_id"], ["id"], ondelete="SET NULL")
        batch.create_unique_constraint("uq_runs_occurrence", ["task_id", "scheduled_for"])
        batch.create_index("ix_runs_user_status", ["user_id", "status"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="cron"))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("missed", sa.String(length=16), nullable=False, server_default="skip"))
        batch.add_column(sa.Column("last_run_at", UtcDateTime(), nullable=True))
        batch.create_index("ix_tasks_due", ["status", "next_run_at"])
    op.create_table(
        "shares",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("grantee", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("resource_type", "resource_id", "grantee", "action"),
    )
    op.create_index("ix_shares_resource_id", "shares", ["resource_id"])
    op.create_index("ix_shares_owner_id", "shares", ["owner_id"])
    op.create_index("ix_shares_grantee", "shares", ["grantee"])
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("module_id", sa.Uuid(), nullable=False),
        sa.Column("module_digest", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["module_id"], ["modules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_snapshots_owner_id", "snapshots", ["owner_id"])
    op.create_index("ix_snapshots_module_id", "snapshots", ["module_id"])
    if op.get_bind().dialect.name == "postgresql":
        _row_level_security()


def _row_level_security() -> None:
    """Shares reach the rows they name: grantees may read (SELECT) a shared module or snapshot,
    never change it; only owners write. The shares table itself is visible to owner and grantee.
    Runs are their user's alone."""
    for table in ("shares", "snapshots", "runs"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    # Runs hold tenants' outputs: owned like tasks, never shared.
    op.execute(
        "CREATE POLICY run_access_policy ON runs FOR ALL "
        f"USING (user_id = {_CURRENT_USER} OR {_ALL_OWNERS}) "
        f"WITH CHECK (user_id = {_CURRENT_USER} OR {_ALL_OWNERS})"
    )
    # FOR ALL would let USING's grantee clause reach UPDATE and DELETE too: grantees only read.
    op.execute(
        "CREATE POLICY share_owner_policy ON shares FOR ALL "
        f"USING (owner_id = {_CURRENT_USER} OR {_ALL_OWNERS}) "
        f"WITH CHECK (owner_id = {_CURRENT_USER} OR {_ALL_OWNERS})"
    )
    op.execute(f"CREATE POLICY share_grantee_read ON shares FOR SELECT USING ({_GRANTEE})")
    op.execute(
        "CREATE POLICY snapshot_access_policy ON snapshots FOR ALL "
        f"USING (owner_id = {_CURRENT_USER} OR {_ALL_OWNERS}) "
        f"WITH CHECK (owner_id = {_CURRENT_USER} OR {_ALL_OWNERS})"
    )
    for table in ("modules", "snapshots"):  # constants: nothing user-supplied reaches this DDL
        op.execute(
            f"CREATE POLICY {table}_shared_read ON {table} FOR SELECT USING (EXISTS ("  # noqa: S608
            f"SELECT 1 FROM shares WHERE shares.resource_type = '{table}' AND shares.resource_id = {table}.id "
            f"AND {_GRANTEE}))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS modules_shared_read ON modules")
        op.execute("DROP POLICY IF EXISTS snapshots_shared_read ON snapshots")
    op.drop_table("snapshots")
    op.drop_table("shares")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_due")
        for column in ("last_run_at", "missed", "priority", "kind"):
            batch.drop_column(column)
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_user_status")
        batch.drop_constraint("uq_runs_occurrence", type_="unique")
        batch.drop_constraint("fk_runs_task_id", type_="foreignkey")
        for column in (
            "heartbeat_at",
            "runner",
            "request",
            "snapshot_id",
            "restored_from",
            "scheduled_for",
            "task_id",
            "finished_at",
            "status",
        ):
            batch.drop_column(column)
        batch.alter_column("outcome", existing_type=sa.String(length=32), nullable=False)
