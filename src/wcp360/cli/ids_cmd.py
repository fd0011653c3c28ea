"""`wcp360 ids ...`: the bans the running servers enforce (they read the same table)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, fail, host, runtime_from
from wcp360.cli.output import json_text, table

app = typer.Typer(help="Intrusion detection: bans.", no_args_is_help=True)


@app.command("blocks")
def blocks(
    output: Annotated[Literal["table", "json"], typer.Option("--format")] = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Active bans with their expiry and reason."""
    with runtime_from(config_dir, data_dir) as rt:
        bans = rt.defense.bans.list(host())
    if output == "json":
        typer.echo(json_text([b.model_dump() for b in bans]))
        return
    columns = ("network", "expires_at", "reason", "rule", "created_by")
    rows = ([b.network, b.expires_at or "never", b.reason, b.rule, b.created_by] for b in bans)
    typer.echo(table(columns, rows), nl=False)


@app.command("block")
def block(
    address: Annotated[str, typer.Argument(help="IP address or CIDR")],
    duration: Annotated[str | None, typer.Option("--duration", help="e.g. 1h; omitted: until lifted")] = None,
    reason: Annotated[str, typer.Option("--reason")] = "blocked by the administrator",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Ban an address or network on every route (and in the firewall where it runs)."""
    from wcp360.config.units import parse_duration

    try:
        length = parse_duration(duration) if duration else None
    except ValueError as exc:
        fail(str(exc))
    with runtime_from(config_dir, data_dir) as rt:
        ban = rt.defense.bans.block(host(), address, length, reason)
    typer.echo(f"blocked {ban.network} until {ban.expires_at or 'lifted'}")


@app.command("unblock")
def unblock(
    address: Annotated[str, typer.Argument(help="IP address or CIDR")],
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Lift every ban on exactly this address or network."""
    with runtime_from(config_dir, data_dir) as rt:
        count = rt.defense.bans.unblock(host(), address)
    typer.echo(f"unblocked {address} ({count} ban{'s' if count != 1 else ''} lifted)")
