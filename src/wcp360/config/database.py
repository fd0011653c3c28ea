"""`database.yml`: the control plane's own database (seed 003 "Connection Security").

Without the file WCP360 uses SQLite in the data dir. With it, PostgreSQL (unless `type: sqlite`).
`user` is the least-privilege application role; `owner_user`, when given, is the role that owns
the schema and runs migrations (seed 003: the app role gets only SELECT/INSERT/UPDATE/DELETE).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from wcp360.config.base import ConfigPath, Duration, Section


class DatabaseConfig(Section):
    type: Literal["postgresql", "sqlite"] = "postgresql"
    # SQLite: path of the database file; relative paths are inside the data dir.
    path: ConfigPath = Path("wcp360.db")
    host: str = "localhost"
    port: int = Field(default=5432, gt=0, lt=65536)
    name: str = "wcp360"
    user: str = "wcp360"
    password: SecretStr | None = None
    owner_user: str | None = None
    owner_password: SecretStr | None = None
    max_connections: int = Field(default=25, gt=0)
    max_idle_connections: int = Field(default=5, ge=0)
    connection_lifetime: Duration = timedelta(hours=1)
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    ssl_cert: ConfigPath | None = None
    ssl_key: ConfigPath | None = None
    ssl_ca: ConfigPath | None = None
    statement_timeout: Duration = timedelta(seconds=30)
    idle_in_transaction_timeout: Duration = timedelta(seconds=60)
    # Applied to the app role by `wcp360 db provision` (needs a superuser; see docs/database.md).
    log_statement: Literal["none", "ddl", "mod", "all"] = "ddl"


class DatabaseFile(Section):
    database: DatabaseConfig = DatabaseConfig()


EMBEDDED_DATABASE = DatabaseFile(database=DatabaseConfig(type="sqlite"))
