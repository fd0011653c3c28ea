"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

Every unit of work is one transaction opened by `Database.transaction(scope)` (store/scope.py). On
PostgreSQL that transaction first runs `set_config('app.user_id', ..., true)` (the SET LOCAL of
seed 003), so the row-level-security policies see who is acting and forget it at commit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import URL, Connection, Engine, Executable, Row, create_engine, event, text
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from wcp360.config.database import DatabaseConfig
from wcp360.store.scope import NOBODY, RowScope

_log = structlog.get_logger("wcp360.database")

READONLY = "wcp360_readonly"


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


def create_db_engine(db: DatabaseConfig, data_dir: Path, *, owner: bool = False, autocommit: bool = False) -> Engine:
    """The engine for transactions, or (`autocommit`) the small one for single-statement reads."""
    if db.type == "sqlite":
        return _sqlite_engine(db.path if db.path.is_absolute() else data_dir / db.path, autocommit)
    pool_size = max(1, min(db.max_idle_connections, db.max_connections))
    if autocommit:
        return create_engine(
            postgres_url(db, owner=owner),
            connect_args=_postgres_connect_args(db),
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
            pool_size=pool_size,
            max_overflow=0,
            pool_recycle=min(300, int(db.connection_lifetime.total_seconds())),
        )
    return create_engine(
        postgres_url(db, owner=owner),
        connect_args=_postgres_connect_args(db),
        pool_size=pool_size,
        max_overflow=max(0, db.max_connections - pool_size),
        pool_recycle=int(db.connection_lifetime.total_seconds()),
        pool_pre_ping=True,
    )


def _sqlite_engine(path: Path, autocommit: bool = False) -> Engine:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        # Create the file 0600 ourselves: sqlite3 would honour the process umask.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if autocommit:
        engine = create_engine(
            f"sqlite+pysqlite:///{path}",
            connect_args={"timeout": 30},
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(f"sqlite+pysqlite:///{path}", connect_args={"timeout": 30})

    event.listen(engine, "connect", _sqlite_pragmas)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the write lock at BEGIN, so two of them queue instead of failing with
        # SQLITE_BUSY; read-only transactions must not, or every request would serialise.
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide where transactions begin (BEGIN IMMEDIATE below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    def __init__(self, engine: Engine, reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readonly_engine = engine.execution_options(**{READONLY: True})
        self._readonly_sessions = sessionmaker(self._readonly_engine, expire_on_commit=False)
        self._thread = threading.local()  # per thread: actions waiting for its write transaction

    def after_writes(self, action: Callable[[], None]) -> None:
        """Run `action` now, or, when this thread is inside a write transaction, as soon as that
        transaction has ended. For work that writes on its own (an IDS ban decided while a sign-in
        recorded its failure inside its transaction): on SQLite a second write transaction from the
        thread that holds the only write lock waits for itself until the busy timeout (30 s)."""
        pending: list[Callable[[], None]] | None = getattr(self._thread, "pending", None)
        if pending is None:
            action()
        else:
            pending.append(action)

    @contextmanager
    def _writing(self, readonly: bool) -> Iterator[None]:
        if readonly or getattr(self._thread, "pending", None) is not None:
            yield  # a read, or nested in this thread's write transaction: the outer one runs them
            return
        self._thread.pending = []
        try:
            yield
        finally:
            pending, self._thread.pending = self._thread.pending, None
            for action in pending:
                try:
                    action()
                except Exception:
                    _log.exception("deferred action failed")

    @contextmanager
    def transaction(self, scope: RowScope, readonly: bool = False) -> Iterator[OrmSession]:
        """One transaction acting for `scope`, committed on success and rolled back on any exception.

        `readonly` transactions do not take SQLite's write lock, and PostgreSQL refuses any write in them.
        """
        factory = self._readonly_sessions if readonly else self._sessions
        with self._writing(readonly), factory() as session, session.begin():
            if self.is_postgres:
                self._acting(session, scope, readonly)
            yield session

    @contextmanager
    def connection(self, scope: RowScope, readonly: bool = False) -> Iterator[Connection]:
        """The same transaction as `transaction()`, for Core statements without the ORM's unit of
        work: on the hottest paths (an execution's module lookup and run insert) the session
        machinery cost more than the statements (benchmarks/README.md)."""
        engine = self._readonly_engine if readonly else self.engine
        with self._writing(readonly), engine.begin() as connection:
            if self.is_postgres:
                self._acting(connection, scope, readonly)
            yield connection

    @staticmethod
    def _acting(target: OrmSession | Connection, scope: RowScope, readonly: bool) -> None:
        """PostgreSQL: who acts, for the RLS policies (SET LOCAL: forgotten at commit)."""
        if readonly:
            target.execute(text("SET TRANSACTION READ ONLY"))
        target.execute(
            text(
                "SELECT set_config('app.user_id', :uid, true), set_config('app.all_owners', :all, true),"
                " set_config('app.grantees', :grantees, true)"
            ),
            {
                "uid": str(scope.actor_id) if scope.actor_id else "",
                "all": "on" if scope.all_owners else "off",
                "grantees": ",".join(g for g in scope.grantees if "," not in g),
            },
        )

    def read_one_statement(
        self, statement: Executable, params: dict[str, Any], scope: RowScope = NOBODY
    ) -> Sequence[Row[Any]]:
        """Run one SELECT on the autocommit reader: no BEGIN/COMMIT, no pool reset.

        One statement is atomic on its own, so nothing is lost; the transaction bookkeeping it
        skips was 80% of the cost of authenticating a request (benchmarks/README.md). SQLite has
        no row-level security, so every read may go this way. On PostgreSQL the RLS settings
        (`scope`) need a transaction to live in: a read of an RLS table that
        names them takes a read-only one; without them the policies show such a read nothing.
        """
        if self.is_postgres and scope != NOBODY:
            with self.connection(scope, readonly=True) as connection:
                return connection.execute(statement, params).all()
        with self.reader.connect() as connection:
            return connection.execute(statement, params).all()

    @classmethod
    def open(cls, db: DatabaseConfig, data_dir: Path) -> Database:
        return cls(create_db_engine(db, data_dir), create_db_engine(db, data_dir, autocommit=True))

    def dispose(self) -> None:
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()
