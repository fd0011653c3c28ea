"""Tenants' databases on the machine's real MariaDB and PostgreSQL, through the agent's verbs:
one user per database, that database only, nothing of the server's own tables, no new databases
or users; rotation and locking hold at once; hostile names are refused before any statement."""

from __future__ import annotations

import glob
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from wcp360.config.server import (
    DatabasesConfig,
    FirewallConfig,
    PostgreSQLEngine,
    TenantLimits,
    TenantsConfig,
)
from wcp360.system.databases import DATABASE_PART, DatabaseRefused, full_name
from wcp360.system.host import AgentFailure, HostAgent
from wcp360.system.protocol import (
    DatabaseCreate,
    DatabaseDrop,
    DatabaseHost,
    DatabaseRotate,
    TenantCreate,
    TenantDelete,
    TenantResume,
    TenantSuspend,
)

ENGINES = ["mariadb", "postgresql"]
HBA = sorted(glob.glob("/etc/postgresql/*/main/pg_hba.conf"))


def connect(engine: str, credentials: DatabaseHost, database: str | None = None, password: str | None = None) -> Any:
    """A connection as the tenant's user, as its application would open one (the socket)."""
    secret = password if password is not None else credentials.password
    if engine == "mariadb":
        return pymysql.connect(
            unix_socket=credentials.socket,
            user=credentials.user,
            password=secret or "",
            database=database or credentials.database,
            autocommit=True,
        )
    return psycopg.connect(
        host=credentials.socket, user=credentials.user, password=secret, dbname=database or credentials.database,
        autocommit=True,
    )  # fmt: skip


def refused(engine: str, credentials: DatabaseHost, **kwargs: Any) -> bool:
    try:
        connect(engine, credentials, **kwargs).close()
    except (pymysql.err.MySQLError, psycopg.Error):
        return True
    return False


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[HostAgent, str, str]]:
    databases = DatabasesConfig(postgresql=PostgreSQLEngine(hba_file=Path(HBA[-1]) if HBA else None))
    config = TenantsConfig(
        home_root=tmp_path / "www",
        archive_dir=tmp_path / "archives",
        uid_min=TEST_UID_MIN,
        uid_max=TEST_UID_MAX,
        databases=databases,
    )
    host = HostAgent(config, FirewallConfig(), tmp_path / "state")
    postgresql = host.databases.servers["postgresql"]
    assert postgresql.keep_hba_block()  # type: ignore[attr-defined] - tenants sign in with a password
    first, second = (f"wtd{uuid.uuid4().hex[:8]}" for _ in range(2))
    for name in (first, second):
        host.create(TenantCreate(tenant=name, limits=TenantLimits()))
    yield host, first, second
    for name in (first, second):
        host.delete(TenantDelete(tenant=name))  # drops their databases too


def create(host: HostAgent, tenant: str, engine: str, name: str = "shop") -> DatabaseHost:
    made = host.run(DatabaseCreate(tenant=tenant, engine=engine, name=name))  # type: ignore[arg-type]
    assert isinstance(made, DatabaseHost) and made.password
    return made


@pytest.mark.parametrize("engine", ENGINES)
def test_one_user_one_database_and_nothing_else(agent: tuple[HostAgent, str, str], engine: str) -> None:
    host, first, second = agent
    mine, theirs = create(host, first, engine), create(host, second, engine)
    assert mine.database == f"{first}_shop" and mine.user == mine.database
    with connect(engine, mine) as connection, connection.cursor() as sql:
        sql.execute("CREATE TABLE orders (id int primary key, item varchar(40))")
        sql.execute("INSERT INTO orders VALUES (1, 'book')")
        forbidden = (
            ["SELECT * FROM mysql.user", "CREATE DATABASE extra", "CREATE USER 'x'@'localhost'",
             f"SELECT * FROM `{theirs.database}`.orders",  # noqa: S608 - our own validated name
             "GRANT ALL ON *.* TO CURRENT_USER",
             "SELECT * FROM orders INTO OUTFILE '/tmp/wcp360-leak'"]
            if engine == "mariadb"
            else ["SELECT * FROM pg_authid", "CREATE DATABASE extra", "CREATE ROLE x", "COPY orders FROM '/etc/passwd'",
                  "SELECT pg_read_file('/etc/passwd')", "ALTER ROLE CURRENT_USER SUPERUSER"]
        )  # fmt: skip
        for statement in forbidden:
            with pytest.raises((pymysql.err.MySQLError, psycopg.Error)):
                sql.execute(statement)
        if engine == "mariadb":  # no FILE privilege: the server reads nothing for this user
            sql.execute("SELECT LOAD_FILE('/etc/passwd')")
            assert sql.fetchone() == (None,)
    # Their database, with my credentials: refused at the door.
    assert refused(engine, mine, database=theirs.database)
    # Nothing of theirs with my password either.
    assert refused(engine, theirs, password=mine.password)


@pytest.mark.parametrize("engine", ENGINES)
def test_rotation_and_suspension_hold_at_once(agent: tuple[HostAgent, str, str], engine: str) -> None:
    host, first, _ = agent
    made = create(host, first, engine)
    open_session = connect(engine, made)
    rotated = host.run(DatabaseRotate(tenant=first, engine=engine, name="shop"))  # type: ignore[arg-type]
    assert isinstance(rotated, DatabaseHost) and rotated.password and rotated.password != made.password
    assert refused(engine, made)  # the old password, from now
    with pytest.raises((pymysql.err.MySQLError, psycopg.Error)), open_session.cursor() as sql:
        sql.execute("SELECT 1")  # and the session opened with it is gone
    connect(engine, rotated).close()
    host.suspend(TenantSuspend(tenant=first))
    assert refused(engine, rotated)  # a suspended tenant's users are locked
    host.resume(TenantResume(tenant=first))
    connect(engine, rotated).close()


@pytest.mark.parametrize("engine", ENGINES)
def test_drop_removes_the_database_and_its_user(agent: tuple[HostAgent, str, str], engine: str) -> None:
    host, first, _ = agent
    made = create(host, first, engine)
    host.run(DatabaseDrop(tenant=first, engine=engine, name="shop"))  # type: ignore[arg-type]
    assert not host.databases.servers[engine].exists(made.database)  # type: ignore[index]
    assert refused(engine, made)
    with pytest.raises(AgentFailure) as missing:
        host.run(DatabaseRotate(tenant=first, engine=engine, name="shop"))  # type: ignore[arg-type]
    assert missing.value.code == "not_found"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_step_leaves_nothing_behind(agent: tuple[HostAgent, str, str], engine: str) -> None:
    """The user exists already (made behind the agent's back): the database made before it goes."""
    host, first, _ = agent
    name = f"{first}_clash"
    server = host.databases.servers[engine]  # type: ignore[index]
    with server._admin() as sql:  # type: ignore[attr-defined]
        if engine == "mariadb":
            sql.execute("CREATE USER %s@'localhost'", (name,))
        else:
            sql.execute(psycopg.sql.SQL("CREATE ROLE {}").format(psycopg.sql.Identifier(name)))
    try:
        with pytest.raises(AgentFailure) as failed:
            host.run(DatabaseCreate(tenant=first, engine=engine, name="clash"))  # type: ignore[arg-type]
        assert failed.value.code == "failed"
        assert not server.exists(name)
        assert host.databases.names(first) == []
    finally:
        with server._admin() as sql:  # type: ignore[attr-defined]
            if engine == "mariadb":
                sql.execute("DROP USER IF EXISTS %s@'localhost'", (name,))
            else:
                sql.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(name)))


HOSTILE = [
    "shop'; DROP DATABASE mysql; --", "shop`", 'shop"', "shop;", "shop name", "\u0455hop",  # a Cyrillic s
    "shop\u200b", "shop\n", "Shop", "1shop", "x" * 65, "shop%", "shop\\", "../shop", "",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_before_any_statement(agent: tuple[HostAgent, str, str], name: str) -> None:
    host, first, _ = agent
    with pytest.raises(ValidationError):
        DatabaseCreate(tenant=first, engine="mariadb", name=name)
    with pytest.raises(DatabaseRefused):
        host.databases.create(host._state(first)[0], "postgresql", name)  # type: ignore[index]
    assert host.databases.names(first) == []


@given(st.text(max_size=80))
def test_full_name_admits_only_the_pattern(part: str) -> None:
    try:
        name = full_name("tenant", part)
    except DatabaseRefused:
        assert not DATABASE_PART.fullmatch(part)
        return
    assert DATABASE_PART.fullmatch(part) and name == f"tenant_{part}" and len(name) <= 63


def test_doctor_finds_a_remote_and_an_anonymous_mariadb_account(agent: tuple[HostAgent, str, str]) -> None:
    from wcp360.doctor import _tenant_databases

    host, _, _ = agent
    server = host.databases.servers["mariadb"]  # type: ignore[index]
    # The check reads config.server.tenants.databases only: the agent's own settings stand in.
    config = SimpleNamespace(server=SimpleNamespace(tenants=host.tenants))
    assert _tenant_databases(config)[0].status != "fail"  # type: ignore[arg-type] - warn: this root has no password
    with server._admin() as sql:  # type: ignore[attr-defined]
        sql.execute("CREATE USER 'wcp360doctor'@'10.0.0.%' IDENTIFIED BY 'x-Unused-1'")
        sql.execute("CREATE USER ''@'localhost'")
    try:
        found = _tenant_databases(config)[0]  # type: ignore[arg-type]
        assert found.status == "fail" and "remote wcp360doctor@10.0.0.%" in found.detail
        assert "anonymous ''@localhost" in found.detail
    finally:
        with server._admin() as sql:  # type: ignore[attr-defined]
            sql.execute("DROP USER IF EXISTS 'wcp360doctor'@'10.0.0.%'")
            sql.execute("DROP USER IF EXISTS ''@'localhost'")


def test_no_server_is_reachable_from_a_non_loopback_address(agent: tuple[HostAgent, str, str]) -> None:
    """A network namespace of the test's own, joined to the host by a veth pair: from there the
    host is 10.213.x.1, and neither server answers on it (both listen on loopback only)."""
    import subprocess
    import sys

    host, first, _ = agent
    mariadb, postgresql = create(host, first, "mariadb"), create(host, first, "postgresql", name="app")
    suffix = uuid.uuid4().hex[:6]
    namespace, outside, inside = f"wcpdb{suffix}", f"wvh{suffix}", f"wvn{suffix}"
    octet = int(suffix[:2], 16) % 250 + 1

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", namespace)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("addr", "add", f"10.213.{octet}.1/30", "dev", outside)
        ip("link", "set", outside, "up")
        ip("netns", "exec", namespace, "ip", "addr", "add", f"10.213.{octet}.2/30", "dev", inside)
        ip("netns", "exec", namespace, "ip", "link", "set", inside, "up")
        ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        probe = (
            "import socket, sys\n"
            "for port in (3306, 5432):\n"
            "    try:\n"
            "        socket.create_connection((sys.argv[1], port), timeout=10).close(); print(port, 'open')\n"
            "    except OSError as exc:\n"
            "        print(port, type(exc).__name__)\n"
        )
        answered = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", probe, f"10.213.{octet}.1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        assert answered[:2] == ["3306 ConnectionRefusedError", "5432 ConnectionRefusedError"], answered
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
    # And both users are local accounts only, whatever the servers listen on.
    with host.databases.servers["mariadb"]._admin() as sql:  # type: ignore[attr-defined]
        sql.execute("SELECT host FROM mysql.user WHERE user = %s", (mariadb.user,))
        assert [row[0] for row in sql.fetchall()] == ["localhost"]
    # PostgreSQL: any other host is rejected for the tenants' roles, before any other line.
    with host.databases.servers["postgresql"]._admin() as sql:  # type: ignore[attr-defined]
        sql.execute(
            "SELECT auth_method FROM pg_hba_file_rules WHERE %s = ANY(user_name) AND address = 'all'",
            ("+wcp360_tenants",),
        )
        assert [row[0] for row in sql.fetchall()] == ["reject"]
    assert postgresql.user == f"{first}_app"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_database_made_behind_the_agents_back_is_never_taken_over(
    agent: tuple[HostAgent, str, str], engine: str
) -> None:
    host, first, _ = agent
    name = f"{first}_theirs"
    server = host.databases.servers[engine]  # type: ignore[index]
    with server._admin() as sql:  # type: ignore[attr-defined]
        sql.execute(f"CREATE DATABASE {'`' + name + '`' if engine == 'mariadb' else name}")
    try:
        with pytest.raises(AgentFailure) as refused_:
            host.run(DatabaseCreate(tenant=first, engine=engine, name="theirs"))  # type: ignore[arg-type]
        assert refused_.value.code == "conflict" and "left alone" in refused_.value.message
        assert server.exists(name) and host.databases.names(first) == []
    finally:
        with server._admin() as sql:  # type: ignore[attr-defined]
            sql.execute(f"DROP DATABASE {'`' + name + '`' if engine == 'mariadb' else name}")


@pytest.mark.parametrize("engine", ENGINES)
def test_passwords_past_their_age_are_rotated_and_handed_to_the_tenants_applications(
    agent: tuple[HostAgent, str, str], engine: str, tmp_path: Path
) -> None:
    import os
    import stat
    from datetime import UTC, datetime, timedelta

    host, first, _ = agent
    home = tmp_path / "www" / first
    made = create(host, first, engine)
    credentials = home / ".wcp360" / "databases" / f"{engine}-shop.env"
    info = credentials.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, home.stat().st_uid)
    assert f"DB_PASSWORD={made.password}\n" in credentials.read_text()
    assert host.rotate_due_databases() == []  # no maximum age configured: on demand only
    host.databases.config = host.databases.config.model_copy(update={"password_max_age": timedelta(days=90)})
    assert host.rotate_due_databases() == []  # not due yet
    later = datetime.now(UTC) + timedelta(days=91)
    rotated = host.rotate_due_databases(now=later)
    assert [(tenant, r.database) for tenant, r in rotated] == [(first, made.database)]
    new_password = rotated[0][1].password
    assert refused(engine, made) and new_password and f"DB_PASSWORD={new_password}\n" in credentials.read_text()
    assert host.rotate_due_databases(now=later + timedelta(days=1)) == []  # the clock starts again
    # A link planted where the agent writes is replaced, never followed.
    victim = tmp_path / "victim.env"
    victim.write_text("untouched\n")
    credentials.unlink()
    os.symlink(victim, credentials)
    host.run(DatabaseRotate(tenant=first, engine=engine, name="shop"))  # type: ignore[arg-type]
    assert victim.read_text() == "untouched\n" and not credentials.is_symlink()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_database_over_its_size_takes_no_more_writes(agent: tuple[HostAgent, str, str], engine: str) -> None:
    host, first, _ = agent
    made = create(host, first, engine)
    with connect(engine, made) as connection, connection.cursor() as sql:
        sql.execute("CREATE TABLE notes (body text)")
        sql.execute("INSERT INTO notes VALUES ('kept')")
    assert host.enforce_database_sizes() == []  # well under the default 1 GiB
    host.databases.config = host.databases.config.model_copy(update={"max_size": 1024})  # every database is over
    assert host.enforce_database_sizes() == [(first, engine, made.database, True)]
    listed = host.databases.listing(first, locked=False)
    assert listed[0].over_size
    if engine == "mariadb":  # reads and deletes still work (to get back under), writes do not
        with connect(engine, made) as connection, connection.cursor() as sql:
            sql.execute("SELECT body FROM notes")
            assert sql.fetchall() == (("kept",),)
            with pytest.raises(pymysql.err.MySQLError):
                sql.execute("INSERT INTO notes VALUES ('more')")
            with pytest.raises(pymysql.err.MySQLError):
                sql.execute("CREATE TABLE more (x int)")
    else:  # the role is locked: PostgreSQL cannot refuse writes to a table's owner otherwise
        assert refused(engine, made)
    host.suspend(TenantSuspend(tenant=first))
    host.resume(TenantResume(tenant=first))
    if engine == "postgresql":
        assert refused(engine, made)  # resuming the tenant does not lift the size's lock
    host.databases.config = host.databases.config.model_copy(update={"max_size": 1024**3})
    assert host.enforce_database_sizes() == [(first, engine, made.database, False)]
    with connect(engine, made) as connection, connection.cursor() as sql:
        sql.execute("INSERT INTO notes VALUES ('more')")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_jailed_application_reaches_its_database_with_the_handed_credentials(
    agent: tuple[HostAgent, str, str], engine: str, tmp_path: Path
) -> None:
    """The whole path a tenant's app takes: in its jail, read the credentials file the agent
    wrote, connect through the server's socket (bound into the jail), query its own database;
    another tenant's database stays refused from there too."""
    from tests.dropping import searchable
    from wcp360.system.protocol import TenantRun

    host, first, second = agent
    create(host, first, engine)
    theirs = create(host, second, engine)
    env_file = f"$HOME/.wcp360/databases/{engine}-shop.env"
    client = (
        'mariadb --socket="$DB_SOCKET" -u "$DB_USER" -p"$DB_PASSWORD" -N -e "SELECT 40 + 2" "$DB_NAME"'
        if engine == "mariadb"
        else 'PGPASSWORD="$DB_PASSWORD" psql -h "$DB_SOCKET" -U "$DB_USER" -Atc "SELECT 40 + 2" "$DB_NAME"'
    )
    with searchable(tmp_path / "www"):
        ours = host.run_in_jail(TenantRun(tenant=first, argv=["sh", "-c", f". {env_file}; {client}"]))
        assert ours.exit_code == 0 and ours.stdout.strip() == "42", ours.stderr
        other = client.replace('"$DB_NAME"', theirs.database)
        refused_ = host.run_in_jail(TenantRun(tenant=first, argv=["sh", "-c", f". {env_file}; {other}"]))
        assert refused_.exit_code != 0 and "42" not in refused_.stdout
