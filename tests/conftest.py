"""Shared fixtures: configs, both database backends (SQLite and the real PostgreSQL), runtimes, clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from tests.dropping import searchable, service_user
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN, dev_wcp360_yml
from wcp360 import audit
from wcp360.api.app import create_app
from wcp360.audit import AuditEvent
from wcp360.config import load_config
from wcp360.config.database import DatabaseConfig
from wcp360.runtime import Runtime
from wcp360.store import migrate
from wcp360.store.provision import provision_postgres
from wcp360.system import accounts

FIXTURES = Path(__file__).parent / "fixtures"
SEED_CONFIG = FIXTURES / "seed-config"
PG_SUPERUSER_URL = os.environ.get("WCP360_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Fast argon2 and a wider TOTP window keep the suite quick and let one test use several codes.
# One worker, no ahead-of-time compiles: each test opens its own runtime, and spawning workers is
# most of what an execution test costs.
NO_PRECOMPILE = "sandbox:\n  precompile: false\n  workers: 1\n"
TEST_SECURITY_YML = """\
auth:
  jwt:
    secret: "test-secret-that-is-long-enough-for-hs256-0123456789"
  argon2:
    memory_kib: 8192
    time_cost: 1
  two_factor:
    valid_window: 2
"""


def write_files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        path.chmod(0o600)
    return directory


def pg_url_for(database: str) -> str:
    return PG_SUPERUSER_URL.rsplit("/", 1)[0] + f"/{database}"


@contextmanager
def provisioned_database(prefix: str, upgraded: bool = True) -> Iterator[DatabaseConfig]:
    """A fresh database with an owner role and a least-privilege app role, dropped afterwards."""
    suffix = f"{prefix}_{uuid.uuid4().hex[:8]}"
    db = DatabaseConfig(
        type="postgresql",
        host="127.0.0.1",
        name=f"wcp360_test_{suffix}",
        user=f"wcp360_app_{suffix}",
        password="app-password-for-tests",  # type: ignore[arg-type]
        owner_user=f"wcp360_owner_{suffix}",
        owner_password="owner-password-for-tests",  # type: ignore[arg-type]
        ssl_mode="disable",
    )
    provision_postgres(PG_SUPERUSER_URL, db)
    try:
        if upgraded:
            migrate.upgrade(db, Path("/nonexistent"))
        yield db
    finally:
        with psycopg.connect(PG_SUPERUSER_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)))
            for role in (db.user, db.owner_user):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[DatabaseConfig]:
    """The database of this test worker (each test cleans up after itself)."""
    with provisioned_database(os.environ.get("PYTEST_XDIST_WORKER", "main")) as db:
        yield db


def database_yml(db: DatabaseConfig) -> str:
    return f"""\
database:
  type: postgresql
  host: "{db.host}"
  port: {db.port}
  name: "{db.name}"
  user: "{db.user}"
  password: "${{WCP360_TEST_DB_PASSWORD}}"
  owner_user: "{db.owner_user}"
  owner_password: "owner-password-for-tests"
  ssl_mode: disable
  max_connections: 10
  max_idle_connections: 2
"""


def truncate_all(db: DatabaseConfig) -> None:
    with psycopg.connect(pg_url_for(db.name), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, tables))))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config_dir(tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Rate limits are off here (the suites sign in far more than 5 times a minute); the defense
    # tests switch them on with their own rate_limit.yml.
    files = {
        "wcp360.yml": dev_wcp360_yml(tmp_path),
        "security.yml": TEST_SECURITY_YML,
        "rate_limit.yml": "rate_limiting:\n  enabled: false\n",
        # Ahead-of-time compiles would start worker processes on every upload; the tests that want
        # them switch them on.
        "sandbox.yml": NO_PRECOMPILE,
    }
    if backend == "postgresql":
        db = request.getfixturevalue("pg_database")
        monkeypatch.setenv("WCP360_TEST_DB_PASSWORD", "app-password-for-tests")
        files["database.yml"] = database_yml(db)
    return write_files(tmp_path / "etc", files)


@contextmanager
def runtime_for(config_dir: Path, data_dir: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A runtime on a test's own configuration; on PostgreSQL the shared test database is emptied
    afterwards (the next test must not meet this one's accounts)."""
    runtime = Runtime.open(load_config(config_dir, data_dir))
    try:
        yield runtime
    finally:
        runtime.close()
        if request.getfixturevalue("backend") == "postgresql":
            truncate_all(request.getfixturevalue("pg_database"))


@pytest.fixture
def rt(config_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    with runtime_for(config_dir, tmp_path / "data", request) as runtime:
        yield runtime


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as test_client:
        yield test_client


class CapturingSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def write(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        return [e.action for e in self.events]

    def of(self, action: str) -> list[AuditEvent]:
        return [e for e in self.events if e.action == action]


@pytest.fixture
def audit_events() -> Iterator[CapturingSink]:
    sink = CapturingSink()
    before = audit.sinks()
    audit.install([sink])
    try:
        yield sink
    finally:
        audit.install(before)


@pytest.fixture
def seed_config_dir(tmp_path: Path) -> Path:
    """The seed-003 files verbatim, with the permissions production mode demands."""
    target = tmp_path / "seed-etc"
    shutil.copytree(SEED_CONFIG, target)
    target.chmod(0o700)
    for path in target.iterdir():
        path.chmod(0o600)
    return target


@pytest.fixture(autouse=True)
def _release_append_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """Audit files get `chattr +a` when the tests run as root; lift it so tmp dirs can be removed."""
    path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if path is not None and shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-a", str(path)], capture_output=True, check=False)


def problem_of(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


@pytest.fixture(autouse=True)
def _remove_test_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tenants are real Linux users when the tests run as root: none outlives its test. Only this
    session's (its id range, homes beneath its own temporary directory)."""
    yield
    import pwd

    ours = str(tmp_path_factory.getbasetemp())
    for entry in pwd.getpwall():
        in_range = TEST_UID_MIN <= entry.pw_uid <= TEST_UID_MAX
        if in_range and entry.pw_gecos == "WCP360 tenant" and entry.pw_dir.startswith(ours):
            accounts.kill_all(entry.pw_uid)
            accounts.remove_user(entry.pw_name)


@pytest.fixture
def serving_as_production_does(tmp_path: Path) -> Iterator[None]:
    """For tests that start `wcp360 serve` in production mode (tests/test_serve.Server): as root,
    it drops to a service user of the test's own, which must reach tmp_path."""
    if os.geteuid() != 0:
        yield
        return
    with service_user() as user, searchable(tmp_path):
        (tmp_path / "service-user").write_text(user)
        yield
