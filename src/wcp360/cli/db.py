"""`wcp360 db upgrade|provision` (the panel's own database) and, from tenant_db_cmd, tenants' databases."""

from __future__ import annotations

from typing import Annotated

import typer

from wcp360.cli import tenant_db_cmd
from wcp360.cli.common import ConfigDirOption, DataDirOption, config_from, fail

app = typer.Typer(
    help="The panel's own database (upgrade, provision) and tenants' databases (create, list, show, rotate, drop).",
    no_args_is_help=True,
)


@app.command("upgrade")
def upgrade(config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Apply pending migrations (as the owner role) and refresh the app role's grants."""
    from wcp360.keys import ensure_private_dir
    from wcp360.store import migrate

    config = config_from(config_dir, data_dir, data_must_exist=False)
    ensure_private_dir(config.data_dir)
    try:
        migrate.upgrade(config.database, config.data_dir)
    except Exception as exc:
        fail(f"upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    typer.echo("database is at the latest schema")


@app.command("provision")
def provision(
    superuser_url: Annotated[
        str, typer.Option("--superuser-url", envvar="WCP360_PG_SUPERUSER_URL", help="e.g. postgresql://postgres@/")
    ],
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create the owner and app roles and the database of database.yml (PostgreSQL only)."""
    from wcp360.store.provision import provision_postgres

    config = config_from(config_dir, data_dir, data_must_exist=False)  # roles only, no local state
    if config.database.type != "postgresql":
        fail("database.yml does not select PostgreSQL")
    try:
        provision_postgres(superuser_url, config.database)
    except Exception as exc:
        fail(f"provision failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    typer.echo(f"provisioned database {config.database.name} for role {config.database.user}")


tenant_db_cmd.register(app)
