"""Tenants' databases on the host's MariaDB and PostgreSQL: one user per database, that database
only, local only, its password rotated on demand (issue 16, the system tier's part).

The agent holds the servers' admin connections (a socket each; the admin password, if any, in a
file only root reads) and is the only process that creates, rotates, locks or drops a tenant's
database or user. Every name is validated against `DATABASE_PART` before it reaches a statement,
and then quoted as an identifier by the driver's own quoting (PostgreSQL: `psycopg.sql`); values
(user names as MariaDB account strings, passwords) travel as parameters or literals the driver
escapes. No statement is built by formatting user input into SQL text.

MariaDB: PyMySQL (pure Python, maintained, Unix sockets, client-side parameter escaping; the C
`mysqlclient` would need a compiler and headers for no gain in a handful of admin statements).
PyMySQL has no identifier quoting, so `_mariadb_identifier` is the ten lines of it, behind the
same strict pattern. Users are `'name'@'localhost'` (the socket), with every privilege on their
database and nothing else (no GRANT OPTION, no global privilege).

PostgreSQL: psycopg 3 (already the panel's driver). Each tenant's role is LOGIN with a SCRAM
password and member of `wcp360_tenants`; its database is owned by it, CONNECT is revoked from
PUBLIC, the `public` schema is owned by the role and closed to PUBLIC. With `hba_file`, the agent
keeps a block at the top of pg_hba.conf: the tenants' group may sign in from the socket and
loopback with a password only (a host whose other lines say `trust` still asks tenants for one).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from wcp360.config.server import DatabasesConfig, MariaDBEngine, PostgreSQLEngine

Engine = Literal["mariadb", "postgresql"]
# The tenant's part of a database name: lower-case ASCII, digits, underscore; the full name is
# `<tenant>_<part>`, at most 32 + 1 + 24 = 57 characters (PostgreSQL's limit is 63, MariaDB's 64).
DATABASE_PART = re.compile(r"[a-z][a-z0-9_]{0,23}")  # fullmatch only: `$` would admit a final newline
_FULL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}_[a-z][a-z0-9_]{0,23}")
TENANTS_ROLE = "wcp360_tenants"
HBA_BEGIN = "# BEGIN wcp360 tenants (managed by the WCP360 agent; edits here are replaced)"
HBA_END = "# END wcp360 tenants"


class DatabaseRefused(Exception):
    """A name or a state the agent will not act on (a 4xx for the panel)."""

    def __init__(self, message: str, code: Literal["invalid", "conflict"] = "invalid") -> None:
        super().__init__(message)
        self.code = code


class DatabaseFailed(Exception):
    """The server refused or failed (a 502 for the panel): what was made is undone."""


def full_name(tenant: str, part: str) -> str:
    """The database's (and its user's) name on the server: `<tenant>_<part>`."""
    if not DATABASE_PART.fullmatch(part):
        raise DatabaseRefused(f"{part!r} is not a database name: a-z first, then a-z 0-9 _, at most 24 characters")
    name = f"{tenant}_{part}".replace("-", "_")
    if not _FULL_NAME.fullmatch(name):
        raise DatabaseRefused(f"{name!r} is not a database name")
    return name


def new_password() -> str:
    """192 bits from the OS's generator, URL-safe (no quote, backslash or space to escape)."""
    return secrets.token_urlsafe(24)


def _exists(engine: str, name: str) -> DatabaseRefused:
    return DatabaseRefused(f"a {engine} database {name} exists on the server already; it is left alone", "conflict")


def _read_secret(path: Path | None) -> str | None:
    return path.read_text().strip() if path is not None else None


class DatabaseServer(Protocol):
    engine: Engine
    location: str  # where tenants connect: a socket, or a socket directory

    def create(self, name: str, password: str) -> None: ...
    def rotate(self, name: str, password: str) -> None: ...
    def lock(self, name: str, locked: bool) -> None: ...
    def drop(self, name: str) -> None: ...
    def restrict(self, name: str, over: bool) -> None: ...
    def exists(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...


def _mariadb_identifier(name: str) -> str:
    """A validated name as a MariaDB identifier. Hand-written: PyMySQL quotes values, not
    identifiers. The pattern admits no backtick, so the doubling below never fires; it is there
    so this function is safe on its own."""
    if not _FULL_NAME.fullmatch(name):
        raise DatabaseRefused(f"{name!r} is not a database name")
    return "`" + name.replace("`", "``") + "`"


class MariaDB:
    engine: Engine = "mariadb"

    def __init__(self, config: MariaDBEngine) -> None:
        self.config = config
        self.location = str(config.socket)

    @contextlib.contextmanager
    def _admin(self) -> Iterator[Any]:
        import pymysql

        try:
            connection = pymysql.connect(
                unix_socket=str(self.config.socket),
                user=self.config.admin_user,
                password=_read_secret(self.config.admin_password_file) or "",
                autocommit=True,
                connect_timeout=10,
            )
        except pymysql.err.MySQLError as exc:
            raise DatabaseFailed(f"MariaDB at {self.config.socket}: {exc.args[-1]}") from None
        try:
            with connection.cursor() as cursor:
                yield cursor
        except pymysql.err.MySQLError as exc:
            raise DatabaseFailed(f"MariaDB: {exc.args[-1]}") from None
        finally:
            connection.close()

    def create(self, name: str, password: str) -> None:
        database = _mariadb_identifier(name)
        with self._admin() as sql:  # one connection: MariaDB's handshake is most of the cost (~20 ms)
            sql.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
            if sql.fetchone() is not None:
                raise _exists("mariadb", name)
            sql.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            try:
                sql.execute("CREATE USER %s@'localhost' IDENTIFIED BY %s", (name, password))
                try:
                    sql.execute(f"GRANT ALL PRIVILEGES ON {database}.* TO %s@'localhost'", (name,))
                except BaseException:
                    sql.execute("DROP USER IF EXISTS %s@'localhost'", (name,))
                    raise
            except BaseException:
                sql.execute(f"DROP DATABASE IF EXISTS {database}")
                raise

    def rotate(self, name: str, password: str) -> None:
        _mariadb_identifier(name)
        with self._admin() as sql:
            sql.execute("ALTER USER %s@'localhost' IDENTIFIED BY %s", (name, password))
            self._disconnect(sql, name)

    def lock(self, name: str, locked: bool) -> None:
        _mariadb_identifier(name)
        with self._admin() as sql:
            sql.execute(f"ALTER USER %s@'localhost' ACCOUNT {'LOCK' if locked else 'UNLOCK'}", (name,))
            if locked:
                self._disconnect(sql, name)

    def restrict(self, name: str, over: bool) -> None:
        """Over its size: read, delete and drop only (to get back under it); else everything again.
        Sessions end either way: MariaDB applies database privileges to a session at its next USE."""
        database = _mariadb_identifier(name)
        with self._admin() as sql:
            if over:
                sql.execute(f"REVOKE ALL PRIVILEGES ON {database}.* FROM %s@'localhost'", (name,))
                sql.execute(f"GRANT SELECT, DELETE, DROP, LOCK TABLES ON {database}.* TO %s@'localhost'", (name,))
            else:
                sql.execute(f"GRANT ALL PRIVILEGES ON {database}.* TO %s@'localhost'", (name,))
            self._disconnect(sql, name)

    def drop(self, name: str) -> None:
        database = _mariadb_identifier(name)
        with self._admin() as sql:
            self._disconnect(sql, name)
            sql.execute("DROP USER IF EXISTS %s@'localhost'", (name,))
            sql.execute(f"DROP DATABASE IF EXISTS {database}")

    def exists(self, name: str) -> bool:
        with self._admin() as sql:
            sql.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
            return sql.fetchone() is not None

    def size(self, name: str) -> int:
        with self._admin() as sql:
            sql.execute(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables"
                " WHERE table_schema = %s",
                (name,),
            )
            row = sql.fetchone()
            return int(row[0]) if row else 0

    def accounts(self) -> list[tuple[str, str, bool]]:
        """Every account: (user, host, holds a global privilege: SUPER, FILE, GRANT or CREATE USER)."""
        with self._admin() as sql:
            sql.execute("SELECT user, host, Super_priv, File_priv, Grant_priv, Create_user_priv FROM mysql.user")
            return [(user, host, "Y" in grants) for user, host, *grants in sql.fetchall()]

    def passwordless(self) -> list[str]:
        """Accounts that sign in by password and have none: whoever reaches the socket is them."""
        with self._admin() as sql:
            sql.execute(
                "SELECT user, host FROM mysql.user WHERE authentication_string = ''"
                " AND plugin IN ('', 'mysql_native_password', 'mysql_old_password')"
            )
            return [f"{user}@{host}" for user, host in sql.fetchall()]

    @staticmethod
    def _disconnect(sql: Any, name: str) -> None:
        """End the user's sessions: a rotated password or a lock holds from now, not from their
        next connection."""
        sql.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (name,))
        for (session,) in sql.fetchall():
            with contextlib.suppress(Exception):  # a session that ended meanwhile
                sql.execute("KILL CONNECTION %s", (int(session),))


class PostgreSQL:
    engine: Engine = "postgresql"

    def __init__(self, config: PostgreSQLEngine) -> None:
        self.config = config
        self.location = str(config.socket_dir)

    @contextlib.contextmanager
    def _admin(self, database: str = "postgres") -> Iterator[Any]:
        import psycopg

        try:
            connection = psycopg.connect(
                host=str(self.config.socket_dir),
                port=self.config.port,
                user=self.config.admin_user,
                password=_read_secret(self.config.admin_password_file),
                dbname=database,
                autocommit=True,  # CREATE/DROP DATABASE refuse to run in a transaction
                connect_timeout=10,
            )
        except psycopg.Error as exc:
            raise DatabaseFailed(f"PostgreSQL at {self.config.socket_dir}: {str(exc).strip()[:300]}") from None
        try:
            with connection.cursor() as cursor:
                yield cursor
        except psycopg.Error as exc:
            raise DatabaseFailed(f"PostgreSQL: {str(exc).strip()[:300]}") from None
        finally:
            connection.close()

    def create(self, name: str, password: str) -> None:
        from psycopg import sql

        if not _FULL_NAME.fullmatch(name):
            raise DatabaseRefused(f"{name!r} is not a database name")
        role = sql.Identifier(name)
        with self._admin() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is not None:
                raise _exists("postgresql", name)
            self._ensure_group(cursor)
            cursor.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOINHERIT NOCREATEDB NOCREATEROLE PASSWORD {} IN ROLE {}").format(
                    role, sql.Literal(password), sql.Identifier(TENANTS_ROLE)
                )
            )
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), role))
                try:
                    cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
                    with self._admin(name) as inside:
                        inside.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
                        inside.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
                except BaseException:
                    cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                    raise
            except BaseException:
                cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
                raise

    def rotate(self, name: str, password: str) -> None:
        from psycopg import sql

        with self._admin() as cursor:
            cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(self._role(name), sql.Literal(password)))
            self._disconnect(cursor, name)

    def lock(self, name: str, locked: bool) -> None:
        from psycopg import sql

        with self._admin() as cursor:
            cursor.execute(sql.SQL("ALTER ROLE {} " + ("NOLOGIN" if locked else "LOGIN")).format(self._role(name)))
            if locked:
                self._disconnect(cursor, name)

    def restrict(self, name: str, over: bool) -> None:
        """Over its size: the role is locked (the owner of its tables cannot be refused writes
        any other way); back under it, unlocked."""
        self.lock(name, over)

    def drop(self, name: str) -> None:
        from psycopg import sql

        role = self._role(name)
        with self._admin() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))

    def exists(self, name: str) -> bool:
        with self._admin() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None

    def size(self, name: str) -> int:
        with self._admin() as cursor:
            cursor.execute("SELECT pg_database_size(%s)", (name,))
            row = cursor.fetchone()
            return int(row[0]) if row else 0

    @staticmethod
    def _role(name: str) -> Any:
        from psycopg import sql

        if not _FULL_NAME.fullmatch(name):
            raise DatabaseRefused(f"{name!r} is not a database name")
        return sql.Identifier(name)

    @staticmethod
    def _ensure_group(cursor: Any) -> None:
        from psycopg import sql

        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (TENANTS_ROLE,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(TENANTS_ROLE)))

    def hba_rules(self) -> list[tuple[str, str | None, str, list[str]]]:
        """pg_hba.conf as the server reads it: (type, address, method, users) of each valid line."""
        with self._admin() as cursor:
            cursor.execute("SELECT type, address, auth_method, user_name FROM pg_hba_file_rules WHERE error IS NULL")
            return [(kind, address, method, users or []) for kind, address, method, users in cursor.fetchall()]

    @staticmethod
    def _disconnect(cursor: Any, name: str) -> None:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))

    def keep_hba_block(self) -> bool:
        """The tenants' lines at the top of pg_hba.conf (password only, socket and loopback), then
        a reload; False when no hba_file is configured."""
        path = self.config.hba_file
        if path is None:
            return False
        block = [
            HBA_BEGIN,
            f"local   all   +{TENANTS_ROLE}                   scram-sha-256",
            f"host    all   +{TENANTS_ROLE}   127.0.0.1/32    scram-sha-256",
            f"host    all   +{TENANTS_ROLE}   ::1/128         scram-sha-256",
            f"host    all   +{TENANTS_ROLE}   all             reject",
            HBA_END,
        ]
        lines = path.read_text().splitlines()
        if HBA_BEGIN in lines and HBA_END in lines:
            lines = lines[: lines.index(HBA_BEGIN)] + lines[lines.index(HBA_END) + 1 :]
        text = "\n".join([*block, *lines]) + "\n"
        if text != path.read_text():
            temporary = path.with_suffix(".wcp360.tmp")
            temporary.write_text(text)
            stat = path.stat()
            os.chown(temporary, stat.st_uid, stat.st_gid)
            os.chmod(temporary, stat.st_mode & 0o777)
            os.replace(temporary, path)
        with self._admin() as cursor:
            self._ensure_group(cursor)
            cursor.execute("SELECT pg_reload_conf()")
        return True


def servers(config: DatabasesConfig) -> dict[Engine, DatabaseServer]:
    """The engines this host offers (config `tenants.databases`)."""
    offered: dict[Engine, DatabaseServer] = {}
    if config.mariadb.enabled:
        offered["mariadb"] = MariaDB(config.mariadb)
    if config.postgresql.enabled:
        offered["postgresql"] = PostgreSQL(config.postgresql)
    return offered
