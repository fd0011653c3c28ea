"""Create the PostgreSQL roles and database of database.yml (seed 003 "PostgreSQL Hardening").

Two roles: the owner (owns the database and schema, runs migrations) and the app role (what the
server connects as; granted only SELECT/INSERT/UPDATE/DELETE by wcp360.store.migrate). Needs a
superuser connection once; idempotent.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from wcp360.config.database import DatabaseConfig


def _ensure_role(cur: psycopg.Cursor[tuple[object, ...]], name: str, password: str | None) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    statement = sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(
        sql.SQL(verb), sql.Identifier(name)
    )
    if password:
        statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
    cur.execute(statement)


def provision_postgres(superuser_url: str, db: DatabaseConfig) -> None:
    owner = db.owner_user or db.user
    secret = db.owner_password if db.owner_user else db.password
    with psycopg.connect(superuser_url, autocommit=True) as conn, conn.cursor() as cur:
        _ensure_role(cur, owner, secret.get_secret_value() if secret else None)
        if owner != db.user:
            _ensure_role(cur, db.user, db.password.get_secret_value() if db.password else None)
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.name,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db.name), sql.Identifier(owner)))
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db.name)))
        cur.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db.name), sql.Identifier(db.user))
        )
        # Seed 003 asks for statement logging "for audit purposes"; only a superuser may set it.
        cur.execute(
            sql.SQL("ALTER ROLE {} SET log_statement = {}").format(
                sql.Identifier(db.user), sql.Literal(db.log_statement)
            )
        )
