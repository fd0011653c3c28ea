"""Creating and rotating a tenant's database through the agent, beside the bare SQL they wrap.

    python benchmarks/bench_databases.py [--databases 30] [--rounds 3]      # as root

- agent: `HostAgent.run(DatabaseCreate)` / `DatabaseRotate` as the socket agent runs them: the
  verb's validation, the tenant's record, the server-side existence check, a new admin
  connection, the statements, the state file (rotate also ends the user's sessions).
- bare: the same statements on a new admin connection, names and password fixed in code:
  MariaDB CREATE DATABASE + CREATE USER + GRANT / ALTER USER; PostgreSQL CREATE ROLE + CREATE
  DATABASE + REVOKE + (in the database) ALTER SCHEMA + REVOKE / ALTER ROLE.

Rounds alternate bare and agent; each round drops what it made. Medians of the rounds' p50.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pymysql
from psycopg import sql

from wcp360.config.server import DatabasesConfig, FirewallConfig, TenantLimits, TenantsConfig
from wcp360.system.host import HostAgent
from wcp360.system.protocol import DatabaseCreate, DatabaseRotate, TenantCreate, TenantDelete

PASSWORD = "Bench-Password-0123456789abcdef"


def bare_mariadb(names: list[str]) -> tuple[list[float], list[float]]:
    created, rotated = [], []
    for name in names:
        began = time.perf_counter()
        with pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True) as c, c.cursor() as s:
            s.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            s.execute("CREATE USER %s@'localhost' IDENTIFIED BY %s", (name, PASSWORD))
            s.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'localhost'", (name,))
        created.append(time.perf_counter() - began)
    for name in names:
        began = time.perf_counter()
        with pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True) as c, c.cursor() as s:
            s.execute("ALTER USER %s@'localhost' IDENTIFIED BY %s", (name, PASSWORD + "x"))
        rotated.append(time.perf_counter() - began)
    with pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True) as c, c.cursor() as s:
        for name in names:
            s.execute("DROP USER %s@'localhost'", (name,))
            s.execute(f"DROP DATABASE `{name}`")
    return created, rotated


def _pg(database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host="/var/run/postgresql", user="postgres", dbname=database, autocommit=True)


def bare_postgresql(names: list[str]) -> tuple[list[float], list[float]]:
    created, rotated = [], []
    for name in names:
        began = time.perf_counter()
        role = sql.Identifier(name)
        with _pg() as c:
            c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(PASSWORD)))
            c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
            c.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))
        with _pg(name) as inside:
            inside.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
            inside.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        created.append(time.perf_counter() - began)
    for name in names:
        began = time.perf_counter()
        with _pg() as c:
            c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(PASSWORD + "x")))
        rotated.append(time.perf_counter() - began)
    with _pg() as c:
        for name in names:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    return created, rotated


def agent_round(host: HostAgent, tenant: str, engine: str, count: int) -> tuple[list[float], list[float]]:
    created, rotated = [], []
    parts = [f"b{index}" for index in range(count)]
    for part in parts:
        began = time.perf_counter()
        host.run(DatabaseCreate(tenant=tenant, engine=engine, name=part))  # type: ignore[arg-type]
        created.append(time.perf_counter() - began)
    for part in parts:
        began = time.perf_counter()
        host.run(DatabaseRotate(tenant=tenant, engine=engine, name=part))  # type: ignore[arg-type]
        rotated.append(time.perf_counter() - began)
    host.databases.drop_all(tenant)
    return created, rotated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--databases", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        databases = DatabasesConfig(max_per_tenant=1000)
        config = TenantsConfig(
            home_root=root / "www", archive_dir=root / "archives", uid_min=43000, uid_max=43999, databases=databases
        )
        host = HostAgent(config, FirewallConfig(), root / "state")
        tenant = f"bd{uuid.uuid4().hex[:8]}"
        host.create(TenantCreate(tenant=tenant, limits=TenantLimits()))
        try:
            for engine, bare in (("mariadb", bare_mariadb), ("postgresql", bare_postgresql)):
                results: dict[str, list[tuple[float, float]]] = {"bare": [], "agent": []}
                for _ in range(options.rounds):
                    names = [f"bbare{uuid.uuid4().hex[:8]}" for _ in range(options.databases)]
                    for label in ("bare", "agent"):
                        if label == "bare":
                            created, rotated = bare(names)
                        else:
                            created, rotated = agent_round(host, tenant, engine, options.databases)
                        results[label].append((statistics.median(created), statistics.median(rotated)))
                medians = {
                    label: (statistics.median(c for c, _ in rounds), statistics.median(r for _, r in rounds))
                    for label, rounds in results.items()
                }
                for label, (create_p50, rotate_p50) in medians.items():
                    figures = f"create p50 {create_p50 * 1000:7.2f} ms  rotate p50 {rotate_p50 * 1000:7.2f} ms"
                    print(f"{engine:10} {label:5} {figures}")
                ratio_create = medians["agent"][0] / medians["bare"][0]
                ratio_rotate = medians["agent"][1] / medians["bare"][1]
                print(f"{engine:10} agent/bare create {ratio_create:.2f}x  rotate {ratio_rotate:.2f}x")
        finally:
            host.delete(TenantDelete(tenant=tenant))


if __name__ == "__main__":
    main()
