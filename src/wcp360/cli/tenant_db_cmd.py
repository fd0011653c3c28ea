"""`wcp360 db create|list|show|rotate|drop`: tenants' databases on MariaDB and PostgreSQL, as the
host administrator (the service and audit events of /api/v1/tenants/{id}/databases). The
password is printed once, by create and rotate; nothing keeps it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, fail, host, runtime_from
from wcp360.cli.output import json_text, table

if TYPE_CHECKING:
    from wcp360.hosting.views import DatabaseView

EngineOption = Annotated[Literal["mariadb", "postgresql"], typer.Option("--engine")]
Format = Annotated[Literal["table", "json"], typer.Option("--format")]
COLUMNS = ("name", "engine", "database", "user", "socket", "locked", "size", "over size")


def _print(databases: list[DatabaseView], output: str) -> None:
    if output == "json":
        typer.echo(json_text([d.model_dump() for d in databases]))
        return
    rows = [[d.name, d.engine, d.database, d.user, d.socket, d.locked, d.size_bytes, d.over_size] for d in databases]
    typer.echo(table(COLUMNS, rows), nl=False)


def create(
    tenant: str,
    name: Annotated[str, typer.Argument(help="a-z first, then a-z 0-9 _, at most 24; the server's is <tenant>_<name>")],
    engine: EngineOption = "mariadb",
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a database and its one user; prints the password once."""
    with runtime_from(config_dir, data_dir) as rt:
        made = rt.databases.create(host(), rt.tenants.find_id(host(), tenant), engine, name)
    if output == "json":
        typer.echo(json_text(made.model_dump()))
        return
    _print([made], output)
    typer.echo(f"password (shown once): {made.password}")


def list_databases(
    tenant: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """The tenant's databases and their sizes."""
    with runtime_from(config_dir, data_dir) as rt:
        _print(rt.databases.list(host(), rt.tenants.find_id(host(), tenant)), output)


def show(
    tenant: str,
    name: str,
    engine: EngineOption = "mariadb",
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """One of the tenant's databases."""
    with runtime_from(config_dir, data_dir) as rt:
        found = [
            d
            for d in rt.databases.list(host(), rt.tenants.find_id(host(), tenant))
            if (d.name, d.engine) == (name, engine)
        ]
    if not found:
        fail(f"{tenant} has no {engine} database {name}")
    _print(found, output)


def rotate(
    tenant: str,
    name: str,
    engine: EngineOption = "mariadb",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """A new password for the database's user (the old one, and its sessions, stop at once)."""
    with runtime_from(config_dir, data_dir) as rt:
        rotated = rt.databases.rotate(host(), rt.tenants.find_id(host(), tenant), engine, name)
    typer.echo(f"{rotated.database}: new password (shown once): {rotated.password}")


def drop(
    tenant: str,
    name: str,
    confirm: Annotated[str, typer.Option("--confirm", help="the database's name again")],
    engine: EngineOption = "mariadb",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Drop the database and its user."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.databases.drop(host(), rt.tenants.find_id(host(), tenant), engine, name, confirm)
    typer.echo(f"{engine} database {name} of {tenant} dropped")


def register(app: typer.Typer) -> None:
    app.command("create")(create)
    app.command("list")(list_databases)
    app.command("show")(show)
    app.command("rotate")(rotate)
    app.command("drop")(drop)
