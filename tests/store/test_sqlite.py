"""The embedded SQLite default: WAL, foreign keys, private files, append-only audit table."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from wcp360.config import load_config
from wcp360.runtime import Runtime
from wcp360.store.migrate import HEAD_REVISION, alembic_config, current_revision
from wcp360.store.scope import NOBODY


@pytest.fixture
def sqlite_rt(tmp_path: Path) -> Runtime:
    return Runtime.open(load_config(tmp_path / "etc", tmp_path / "data", env={}))


def test_sqlite_runs_in_wal_with_foreign_keys(sqlite_rt: Runtime) -> None:
    with sqlite_rt.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None and current_revision(sqlite_rt.db.engine) == head
    # The fast path (no Alembic when the database is at the newest revision) knows the newest one.
    assert head == HEAD_REVISION


def test_data_files_are_private(sqlite_rt: Runtime, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "wcp360.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secrets").stat().st_mode) == 0o700
    for secret in (data / "secrets").iterdir():
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_audit_table_rejects_update_and_delete(sqlite_rt: Runtime) -> None:
    with sqlite_rt.db.transaction(NOBODY) as s:
        s.execute(text("INSERT INTO audit_logs (ts, action, outcome, details) VALUES ('2026-01-01', 'a', 'ok', '{}')"))
    for statement in ("UPDATE audit_logs SET action = 'b'", "DELETE FROM audit_logs"):
        with pytest.raises(DatabaseError, match="append-only"), sqlite_rt.db.transaction(NOBODY) as s:
            s.execute(text(statement))


def test_foreign_keys_are_enforced(sqlite_rt: Runtime) -> None:
    with pytest.raises(DatabaseError, match="FOREIGN KEY"), sqlite_rt.db.transaction(NOBODY) as s:
        s.execute(text("INSERT INTO user_roles (user_id, role) VALUES ('00000000000000000000000000000000', 'x')"))


def test_secrets_survive_restart_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    config = load_config(tmp_path / "etc", tmp_path / "data", env={})
    first = Runtime.open(config)
    second = Runtime.open(config)
    assert first.keys.jwt_secret == second.keys.jwt_secret
    (tmp_path / "data" / "secrets" / "jwt.secret").chmod(0o644)
    with pytest.raises(PermissionError, match="must be 0600"):
        Runtime.open(config)
