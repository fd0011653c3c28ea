"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

Every unit of work is one transaction opened by `Database.transaction(actor_id=...)`. On
PostgreSQL that transaction first runs `set_config('app.user_id', ..., true)` (the SET LOCAL of
seed 003), so the row-level-security policies see who is acting and forget it at commit.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from wcp360.config.database import DatabaseConfig


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def postgres_url(db: DatabaseConfig, *, owner: bool = False) -> URL:
    user = db.owner_user if owner and db.owner_user else db.user
    secret = db.owner_password if owner and db.owner_user else db.password
    return URL.create(
        "postgresql+psycopg",
        username=user,
        password=secret.get_secret_value() if secret else None,
        host=db.host,
        port=db.port,
        database=db.name,
    )


def _postgres_connect_args(db: DatabaseConfig) -> dict[str, Any]:
    args: dict[str, Any] = {
        "sslmode": db.ssl_mode,
        "application_name": "wcp360",
        # Server-side limits of seed 003, applied to every connection of the pool.
        "options": (
            f"-c statement_timeout={_ms(db.statement_timeout.total_seconds())} "
            f"-c idle_in_transaction_session_timeout={_ms(db.idle_in_transaction_timeout.total_seconds())}"
        ),
    }
    for key, path in (("sslcert", db.ssl_cert), ("sslkey", db.ssl_key), ("sslrootcert", db.ssl_ca)):
        if path is not None:
            args[key] = str(path)
    return args


def create_db_engine(db: DatabaseConfig, data_dir: Path, *, owner: bool = False) -> Engine:
    if db.type == "sqlite":
        return _sqlite_engine(db.path if db.path.is_absolute() else data_dir / db.path)
    pool_size = max(1, min(db.max_idle_connections, db.max_connections))
    return create_engine(
        postgres_url(db, owner=owner),
        connect_args=_postgres_connect_args(db),
        pool_size=pool_size,
        max_overflow=max(0, db.max_connections - pool_size),
        pool_recycle=int(db.connection_lifetime.total_seconds()),
        pool_pre_ping=True,
    )


def _sqlite_engine(path: Path) -> Engine:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        # Create the file 0600 ourselves: sqlite3 would honour the process umask.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = create_engine(f"sqlite+pysqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (BEGIN IMMEDIATE below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Take the write lock at BEGIN, so two writers queue instead of failing with SQLITE_BUSY.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def transaction(self, actor_id: uuid.UUID | None = None, all_owners: bool = False) -> Iterator[OrmSession]:
        """One transaction, committed on success and rolled back on any exception.

        `all_owners` is set only after the policy function granted `system:any_owner`; RLS then
        lets the transaction see every owner's rows.
        """
        with self._sessions() as session, session.begin():
            if self.is_postgres:
                session.execute(
                    text("SELECT set_config('app.user_id', :uid, true), set_config('app.all_owners', :all, true)"),
                    {"uid": str(actor_id) if actor_id else "", "all": "on" if all_owners else "off"},
                )
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
