"""Seed 003 PostgreSQL hardening, attacked with hand-written SQL on the app role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import PG_SUPERUSER_URL, pg_url_for
from wcp360.config.database import DatabaseConfig
from wcp360.store.database import postgres_url


def _connect(db: DatabaseConfig, owner: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    url = postgres_url(db, owner=owner).render_as_string(hide_password=False).replace("+psycopg", "")
    return psycopg.connect(url, sslmode="disable")


@pytest.fixture
def two_users(pg_database: DatabaseConfig) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
    """Users A and B with one module, one task and one audit row each (inserted by the superuser)."""
    a, b = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(pg_url_for(pg_database.name), autocommit=True) as su:
        for user in (a, b):
            su.execute(
                "INSERT INTO users (id, username, email, status, password_hash, created_at, updated_at, "
                "password_changed_at) VALUES (%s, %s, %s, 'active', 'x', now(), now(), now())",
                (user, f"u{user.hex[:8]}", f"{user.hex[:8]}@t.test"),
            )
            module = uuid.uuid4()
            su.execute(
                "INSERT INTO modules (id, owner_id, name, version, size, digest, status, risk_score, findings, "
                "capabilities, created_at) VALUES (%s, %s, 'm', 1, 1, 'd', 'active', 0, '[]', '{}', now())",
                (module, user),
            )
            su.execute(
                "INSERT INTO tasks (id, user_id, module_id, name, schedule, payload, status, created_at) "
                "VALUES (%s, %s, %s, 't', '@hourly', '{}', 'active', now())",
                (uuid.uuid4(), user, module),
            )
            su.execute(
                "INSERT INTO audit_logs (ts, actor_id, action, outcome, details) VALUES (now(), %s, 'x', 'ok', '{}')",
                (user,),
            )
    yield a, b
    with psycopg.connect(pg_url_for(pg_database.name), autocommit=True) as su:
        su.execute("TRUNCATE users, modules, tasks, audit_logs CASCADE")


def _as(conn: psycopg.Connection[tuple[object, ...]], user: uuid.UUID | None) -> None:
    conn.execute("SELECT set_config('app.user_id', %s, true)", (str(user) if user else "",))


def test_user_a_sees_only_own_rows(pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]) -> None:
    a, b = two_users
    with _connect(pg_database) as conn:
        _as(conn, a)
        assert conn.execute("SELECT owner_id FROM modules").fetchall() == [(a,)]
        assert conn.execute("SELECT user_id FROM tasks").fetchall() == [(a,)]
        assert conn.execute("SELECT actor_id FROM audit_logs").fetchall() == [(a,)]
        assert conn.execute("SELECT count(*) FROM modules WHERE owner_id = %s", (b,)).fetchone() == (0,)


def test_user_a_cannot_change_or_delete_b_rows(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_users
    with _connect(pg_database) as conn:
        _as(conn, a)
        assert conn.execute("UPDATE modules SET name = 'pwned' WHERE owner_id = %s", (b,)).rowcount == 0
        assert conn.execute("DELETE FROM tasks WHERE user_id = %s", (b,)).rowcount == 0
        conn.commit()
    with psycopg.connect(pg_url_for(pg_database.name)) as su:
        assert su.execute("SELECT name FROM modules WHERE owner_id = %s", (b,)).fetchone() == ("m",)
        assert su.execute("SELECT count(*) FROM tasks WHERE user_id = %s", (b,)).fetchone() == (1,)


def test_user_a_cannot_insert_rows_owned_by_b(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_users
    with _connect(pg_database) as conn:
        _as(conn, a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO modules (id, owner_id, name, version, size, digest, status, risk_score, findings, "
                "capabilities, created_at) VALUES (%s, %s, 'x', 2, 1, 'd', 'active', 0, '[]', '{}', now())",
                (uuid.uuid4(), b),
            )


def test_reassigning_own_row_to_b_is_refused(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_users
    with _connect(pg_database) as conn:
        _as(conn, a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE modules SET owner_id = %s WHERE owner_id = %s", (b, a))


def test_without_a_user_context_nothing_is_visible(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with _connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM modules").fetchone() == (0,)
        _as(conn, None)
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (0,)


def test_set_local_context_ends_with_the_transaction(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, _ = two_users
    with _connect(pg_database) as conn:
        _as(conn, a)
        assert conn.execute("SELECT count(*) FROM modules").fetchone() == (1,)
        conn.commit()
        assert conn.execute("SELECT count(*) FROM modules").fetchone() == (0,)


def test_app_role_cannot_disable_rls_or_change_schema(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    attacks = [
        "ALTER TABLE modules DISABLE ROW LEVEL SECURITY",
        "DROP POLICY module_access_policy ON modules",
        "CREATE TABLE evil (id int)",
        "SET row_security = off; SELECT * FROM modules",
        "TRUNCATE modules",
        "UPDATE alembic_version SET version_num = 'x'",
    ]
    for statement in attacks:
        with _connect(pg_database) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
            conn.execute("SELECT 1/0 FROM modules LIMIT 0")  # row_security=off errors only on a query


def test_audit_log_is_append_only_for_the_app_role(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, _ = two_users
    with _connect(pg_database) as conn:
        _as(conn, a)
        conn.execute(
            "INSERT INTO audit_logs (ts, actor_id, action, outcome, details) VALUES (now(), %s, 'y', 'ok', '{}')", (a,)
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_logs SET action = 'z'")
    with _connect(pg_database) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM audit_logs")


def test_even_owner_and_superuser_cannot_rewrite_the_audit_table(
    pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]
) -> None:
    # The owner is bound by FORCE ROW LEVEL SECURITY: no DELETE policy exists, so nothing matches.
    with _connect(pg_database, owner=True) as conn:
        conn.execute("SELECT set_config('app.all_owners', 'on', true)")
        assert conn.execute("DELETE FROM audit_logs").rowcount == 0
    # A superuser bypasses RLS, and meets the append-only trigger.
    with psycopg.connect(pg_url_for(pg_database.name)) as su:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            su.execute("DELETE FROM audit_logs")
        su.rollback()
        assert su.execute("SELECT count(*) FROM audit_logs").fetchone() == (2,)


def test_connection_settings_reach_the_server(pg_database: DatabaseConfig) -> None:
    from wcp360.store.database import create_db_engine

    engine = create_db_engine(pg_database, data_dir=__import__("pathlib").Path("/nonexistent"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
            assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "1min"
            assert conn.exec_driver_sql("SELECT current_user").scalar() == pg_database.user
            assert conn.exec_driver_sql("SHOW log_statement").scalar() == pg_database.log_statement
    finally:
        engine.dispose()
    assert engine.pool.size() == pg_database.max_idle_connections  # type: ignore[attr-defined]


def test_the_app_role_holds_no_special_attributes(pg_database: DatabaseConfig) -> None:
    with psycopg.connect(PG_SUPERUSER_URL) as su:
        row = su.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = %s",
            (pg_database.user,),
        ).fetchone()
    assert row == (False, False, False, False)


def test_shares_open_reads_not_writes(pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]) -> None:
    """B sees A's module only through a share naming B (or B's role), and can never change it."""
    a, b = two_users
    with psycopg.connect(pg_url_for(pg_database.name), autocommit=True) as su:
        row = su.execute("SELECT id FROM modules WHERE owner_id = %s", (a,)).fetchone()
        assert row is not None
        module_a = row[0]
    with _connect(pg_database) as conn:
        _as(conn, b)
        conn.execute("SELECT set_config('app.grantees', %s, true)", (f"{b},role:developer",))
        assert conn.execute("SELECT count(*) FROM modules WHERE id = %s", (module_a,)).fetchone() == (0,)
        # B cannot share A's module with itself: shares are written by owners only.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO shares (id, resource_type, resource_id, owner_id, grantee, action, created_at) "
                "VALUES (%s, 'modules', %s, %s, %s, 'read', now())",
                (uuid.uuid4(), module_a, a, str(b)),
            )
        conn.rollback()
        _as(conn, a)
        conn.execute(
            "INSERT INTO shares (id, resource_type, resource_id, owner_id, grantee, action, created_at) "
            "VALUES (%s, 'modules', %s, %s, 'role:developer', 'read', now())",
            (uuid.uuid4(), module_a, a),
        )
        conn.commit()
        _as(conn, b)
        conn.execute("SELECT set_config('app.grantees', %s, true)", (f"{b},role:developer",))
        assert conn.execute("SELECT owner_id FROM modules ORDER BY owner_id = %s", (a,)).fetchall() == [(b,), (a,)]
        assert conn.execute("UPDATE modules SET status = 'active' WHERE id = %s", (module_a,)).rowcount == 0
        assert conn.execute("DELETE FROM modules WHERE id = %s", (module_a,)).rowcount == 0
        assert conn.execute("DELETE FROM shares").rowcount == 0  # grantees see shares, cannot remove them
        conn.rollback()
        # Another role's grantee list does not match.
        _as(conn, b)
        conn.execute("SELECT set_config('app.grantees', %s, true)", (f"{b},role:viewer",))
        assert conn.execute("SELECT count(*) FROM modules WHERE id = %s", (module_a,)).fetchone() == (0,)


def test_runs_are_their_users_alone(pg_database: DatabaseConfig, two_users: tuple[uuid.UUID, uuid.UUID]) -> None:
    a, b = two_users
    with psycopg.connect(pg_url_for(pg_database.name), autocommit=True) as su:
        for user in (a, b):
            su.execute(
                "INSERT INTO runs (id, module_id, user_id, outcome, stdout, stderr, duration_ms, fuel_used, "
                "memory_peak_bytes, created_at) SELECT %s, id, owner_id, 'ok', 'secret output', '', 0, 0, 0, now() "
                "FROM modules WHERE owner_id = %s",
                (uuid.uuid4(), user),
            )
    with _connect(pg_database) as conn:
        _as(conn, a)
        assert conn.execute("SELECT user_id FROM runs").fetchall() == [(a,)]
        assert conn.execute("UPDATE runs SET stdout = 'x' WHERE user_id = %s", (b,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO runs (id, module_id, user_id, outcome, stdout, stderr, duration_ms, fuel_used, "
                "memory_peak_bytes, created_at) SELECT %s, id, %s, 'ok', '', '', 0, 0, 0, now() FROM modules LIMIT 1",
                (uuid.uuid4(), b),
            )
