"""`wcp360 tenant ...`: hosting customers, as the host administrator (the same service, policy
function and audit events as /api/v1/tenants; the host side goes through the system agent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from wcp360.cli import process_cmd
from wcp360.cli.common import ConfigDirOption, DataDirOption, host, runtime_from
from wcp360.cli.output import json_text, table

if TYPE_CHECKING:
    from wcp360.hosting.views import TenantView

app = typer.Typer(
    help="Create and manage tenants (Linux users with a home beneath tenants.home_root).", no_args_is_help=True
)

app.add_typer(process_cmd.app, name="process")

COLUMNS = ("name", "status", "uid", "home", "owner", "degraded", "id")
Format = Annotated[Literal["table", "json"], typer.Option("--format")]


def _row(tenant: TenantView) -> list[object]:
    return [
        tenant.name,
        tenant.status,
        tenant.uid,
        tenant.home,
        tenant.owner_id,
        "; ".join(tenant.degraded),
        tenant.id,
    ]


def _print(tenant: TenantView, output: str) -> None:
    if output == "json":
        typer.echo(json_text(tenant.model_dump()))
    else:
        typer.echo(table(COLUMNS, [_row(tenant)]), nl=False)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Linux user name rules: a-z first, then a-z 0-9 _ -, at most 32")],
    owner: Annotated[str, typer.Option("--owner", help="the account that owns it: a reseller, or the tenant's own")],
    member: Annotated[str | None, typer.Option("--member", help="an account that belongs to it")] = None,
    disk: Annotated[str | None, typer.Option("--disk", help="e.g. 10GiB")] = None,
    processes: Annotated[int | None, typer.Option("--processes")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="e.g. 1GiB")] = None,
    cpu_percent: Annotated[int | None, typer.Option("--cpu-percent", help="100 = one CPU")] = None,
    io_weight: Annotated[int | None, typer.Option("--io-weight")] = None,
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a tenant: its Linux user and group, and its home with public/, logs/, tmp/."""
    limits = _limits(disk, processes, memory, cpu_percent, io_weight)
    with runtime_from(config_dir, data_dir) as rt:
        tenant = rt.tenants.create(host(), name, owner, member, limits)
    _print(tenant, output)


def _limits(
    disk: str | None, processes: int | None, memory: str | None, cpu_percent: int | None, io_weight: int | None
) -> dict[str, object]:
    given = {"disk": disk, "processes": processes, "memory": memory, "cpu_percent": cpu_percent, "io_weight": io_weight}
    return {key: value for key, value in given.items() if value is not None}


@app.command("list")
def list_tenants(
    status: Annotated[Literal["active", "suspended"] | None, typer.Option("--status")] = None,
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List tenants by name."""
    with runtime_from(config_dir, data_dir) as rt:
        tenants, _ = rt.tenants.list_tenants(host(), limit=1_000_000, status=status)
    if output == "json":
        typer.echo(json_text([t.model_dump() for t in tenants]))
        return
    typer.echo(table(COLUMNS, [_row(t) for t in tenants]), nl=False)


@app.command("show")
def show(
    name: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """One tenant, with its limits."""
    with runtime_from(config_dir, data_dir) as rt:
        tenant = rt.tenants.get(host(), rt.tenants.find_id(host(), name))
    if output == "json":
        typer.echo(json_text(tenant.model_dump()))
        return
    _print(tenant, output)
    typer.echo("limits: " + ", ".join(f"{k} {v}" for k, v in tenant.limits.model_dump().items()))


@app.command("suspend")
def suspend(
    name: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """Stop the tenant's processes; its accounts cannot sign in until it is resumed."""
    with runtime_from(config_dir, data_dir) as rt:
        tenant = rt.tenants.suspend(host(), rt.tenants.find_id(host(), name))
    _print(tenant, output)


@app.command("resume")
def resume(
    name: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """Undo a suspension."""
    with runtime_from(config_dir, data_dir) as rt:
        tenant = rt.tenants.resume(host(), rt.tenants.find_id(host(), name))
    _print(tenant, output)


@app.command("limits")
def limits(
    name: str,
    disk: Annotated[str | None, typer.Option("--disk")] = None,
    processes: Annotated[int | None, typer.Option("--processes")] = None,
    memory: Annotated[str | None, typer.Option("--memory")] = None,
    cpu_percent: Annotated[int | None, typer.Option("--cpu-percent")] = None,
    io_weight: Annotated[int | None, typer.Option("--io-weight")] = None,
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Change some of a tenant's limits (enforced by its jail)."""
    with runtime_from(config_dir, data_dir) as rt:
        tenant = rt.tenants.set_limits(
            host(), rt.tenants.find_id(host(), name), _limits(disk, processes, memory, cpu_percent, io_weight)
        )
    _print(tenant, output)


@app.command("delete")
def delete(
    name: str,
    confirm: Annotated[str, typer.Option("--confirm", help="the tenant's name again")],
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Archive the tenant's home, then remove the home, its Linux user and group."""
    with runtime_from(config_dir, data_dir) as rt:
        rt.tenants.delete(host(), rt.tenants.find_id(host(), name), confirm)
    typer.echo(f"tenant {name} deleted")
