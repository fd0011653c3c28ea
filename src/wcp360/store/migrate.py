"""Schema upgrades (Alembic) and, on PostgreSQL, the least-privilege grants for the app role."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from wcp360.config.database import DatabaseConfig
from wcp360.store.database import create_db_engine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration (tests/store/test_sqlite.py checks it against Alembic's head). A database
# already there needs no Alembic at all: importing it costs most of a second, on every CLI command.
HEAD_REVISION = "0008"


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# pg_advisory_xact_lock key for schema upgrades ("wcp360" in ASCII): any constant shared by all
# WCP360 processes on a database would do.
UPGRADE_LOCK = 0x776370333630


def upgrade(db: DatabaseConfig, data_dir: Path, revision: str = "head") -> None:
    """Run migrations as the owner role, then (re)apply the app role's grants, in one transaction.

    Every server and CLI command does this at start. On PostgreSQL several of them starting at once
    take turns under an advisory lock held until the transaction ends: unserialised, two first
    upgrades both create the same tables, and concurrent GRANTs fail with "tuple concurrently
    updated" (tests/store/test_concurrent_upgrades.py). SQLite's writers take turns already
    (BEGIN IMMEDIATE).
    """
    engine = create_db_engine(db, data_dir, owner=True)
    try:
        with engine.begin() as connection:
            postgres = engine.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
            if revision != "head" or _revision_of(connection) != HEAD_REVISION:
                upgrade_connection(connection, revision)
            if postgres and db.owner_user and db.owner_user != db.user:
                grant_app_role(connection, db.user)
    finally:
        engine.dispose()


def _revision_of(connection: Connection) -> str | None:
    # A savepoint: on PostgreSQL a failed statement (no table yet) would abort the transaction.
    try:
        with connection.begin_nested():
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    except Exception:
        return None
    return str(row[0]) if row else None


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return None
        return row[0] if row else None


def grant_app_role(connection: Connection, app_role: str) -> None:
    """Seed 003: the app role gets SELECT/INSERT/UPDATE/DELETE and sequence usage, nothing more.

    The audit table is append-only for it (no UPDATE/DELETE), and it cannot move the schema version.
    """
    role = connection.dialect.identifier_preparer.quote(app_role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_logs FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {role}",
    ]
    for statement in statements:
        connection.execute(text(statement))
