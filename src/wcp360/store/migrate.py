"""Schema upgrades (Alembic) and, on PostgreSQL, the least-privilege grants for the app role."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, text

from wcp360.config.database import DatabaseConfig
from wcp360.store.database import create_db_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(db: DatabaseConfig, data_dir: Path, revision: str = "head") -> None:
    """Run migrations as the owner role, then (re)apply the app role's grants."""
    engine = create_db_engine(db, data_dir, owner=True)
    try:
        upgrade_engine(engine, revision)
        if engine.dialect.name == "postgresql" and db.owner_user and db.owner_user != db.user:
            grant_app_role(engine, db.user)
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return None
        return row[0] if row else None


def grant_app_role(engine: Engine, app_role: str) -> None:
    """Seed 003: the app role gets SELECT/INSERT/UPDATE/DELETE and sequence usage, nothing more.

    The audit table is append-only for it (no UPDATE/DELETE), and it cannot move the schema version.
    """
    role = engine.dialect.identifier_preparer.quote(app_role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_logs FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {role}",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
