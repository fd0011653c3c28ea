"""Every server and CLI command upgrades the schema and re-applies the app role's grants at start:
several starting at once on one PostgreSQL must not fail (concurrent GRANTs raise "tuple
concurrently updated"; two first upgrades would both create the same tables)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import pg_url_for, provisioned_database
from wcp360.config.database import DatabaseConfig
from wcp360.store import migrate

STARTING_AT_ONCE = 4
ROUNDS = 3


@pytest.fixture
def fresh_database() -> Iterator[DatabaseConfig]:
    """A provisioned database with no schema yet (the first upgrades create it)."""
    with provisioned_database("race", upgraded=False) as db:
        yield db


def _start(db: DatabaseConfig, barrier: Any, failures: Any) -> None:
    """One process starting: wait for the others, then upgrade as every server and CLI command does."""
    barrier.wait()
    try:
        migrate.upgrade(db, Path("/nonexistent"))
    except Exception as exc:
        failures.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


def test_processes_starting_at_once_all_upgrade(fresh_database: DatabaseConfig) -> None:
    context = multiprocessing.get_context("spawn")
    failures = context.Queue()
    # Round one creates the schema; the later ones find it at head and re-apply the grants.
    for _ in range(ROUNDS):
        barrier = context.Barrier(STARTING_AT_ONCE)
        starts = [
            context.Process(target=_start, args=(fresh_database, barrier, failures)) for _ in range(STARTING_AT_ONCE)
        ]
        for process in starts:
            process.start()
        for process in starts:
            process.join(120)
            assert process.exitcode == 0
    seen = []
    while not failures.empty():
        seen.append(failures.get())
    assert seen == []

    url = pg_url_for(fresh_database.name).replace("postgres@", f"{fresh_database.user}:app-password-for-tests@")
    with psycopg.connect(url) as app:
        # The app role got its grants, and the schema is complete and at one version.
        assert app.execute("SELECT count(*) FROM users").fetchone() == (0,)
        assert len(app.execute("SELECT version_num FROM alembic_version").fetchall()) == 1
