"""`wcp360 tenant process ...`: a tenant's supervised processes (its php-fpm pool, its Node app)
and its resource usage, as the host administrator (the service and audit events of
/api/v1/tenants/{id}/processes). Processes are kept by the agent (`wcp360 agent`): a command that
would start one without it refuses, since a process started by this short-lived command would
end with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, fail, host, runtime_from
from wcp360.cli.output import json_text, table

if TYPE_CHECKING:
    from wcp360.hosting.views import ProcessView
    from wcp360.runtime import Runtime

app = typer.Typer(help="Start, stop and watch a tenant's supervised processes.", no_args_is_help=True)

COLUMNS = ("name", "runtime", "status", "pid", "restarts", "last exit", "command", "socket")
Format = Annotated[Literal["table", "json"], typer.Option("--format")]
NO_AGENT = "processes are kept by the agent; start it (`wcp360 agent`, or the wcp360-agent unit) first"


def _row(process: ProcessView) -> list[object]:
    command = " ".join(process.argv) if process.argv else "(php-fpm pool)"
    return [
        process.name,
        process.runtime,
        process.status,
        process.pid,
        process.restarts,
        process.last_exit,
        command,
        process.socket,
    ]


def _print(processes: list[ProcessView], output: str) -> None:
    if output == "json":
        typer.echo(json_text([p.model_dump() for p in processes]))
    else:
        typer.echo(table(COLUMNS, [_row(p) for p in processes]), nl=False)


def _needs_agent(rt: Runtime) -> None:
    if rt.agent.kind != "socket":
        fail(NO_AGENT)


@app.command("list")
def list_processes(
    tenant: str, output: Format = "table", config_dir: ConfigDirOption = None, data_dir: DataDirOption = None
) -> None:
    """The tenant's processes, and its usage from its cgroups."""
    with runtime_from(config_dir, data_dir) as rt:
        listing = rt.processes.list(host(), rt.tenants.find_id(host(), tenant))
    if output == "json":
        typer.echo(json_text(listing.model_dump()))
        return
    _print(listing.processes, output)
    usage = listing.usage
    cpu = f"{usage.cpu_seconds:.2f} s" if usage.cpu_seconds is not None else "-"
    memory = f"{usage.memory_bytes / 1024**2:.1f} MiB" if usage.memory_bytes is not None else "-"
    typer.echo(f"usage: cpu {cpu}, memory {memory}, pids {usage.pids if usage.pids is not None else '-'}")


@app.command("start")
def start(
    tenant: str,
    name: Annotated[str, typer.Argument(help="a-z first, then a-z 0-9 -, at most 32")],
    argv: Annotated[list[str] | None, typer.Argument(help="the command, after -- ; none for php")] = None,
    runtime: Annotated[Literal["static", "php", "node"], typer.Option("--runtime")] = "static",
    network: Annotated[bool, typer.Option("--network", help="may connect out over TCP")] = False,
    output: Format = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Declare a process (replacing one of the same name) and start it, e.g.
    `wcp360 tenant process start shop web --runtime node -- node server.js`."""
    from pydantic import ValidationError

    from wcp360.system.protocol import ProcessSpec

    try:
        spec = ProcessSpec(name=name, runtime=runtime, argv=argv or None, network=network)
    except ValidationError as exc:
        fail(str(exc.errors()[0]["msg"]).removeprefix("Value error, "), 2)
    with runtime_from(config_dir, data_dir) as rt:
        _needs_agent(rt)
        process = rt.processes.start(host(), rt.tenants.find_id(host(), tenant), spec)
    _print([process], output)


def _control(action: Literal["stop", "restart", "remove"]) -> None:
    def command(
        tenant: str,
        name: str,
        output: Format = "table",
        config_dir: ConfigDirOption = None,
        data_dir: DataDirOption = None,
    ) -> None:
        with runtime_from(config_dir, data_dir) as rt:
            if action != "stop":
                _needs_agent(rt)
            process = rt.processes.control(host(), rt.tenants.find_id(host(), tenant), name, action)
        if action == "remove":
            typer.echo(f"process {name} of {tenant} removed")
        else:
            _print([process], output)

    command.__doc__ = {
        "stop": "Stop it (SIGTERM, then its jail ends); it stays declared, stopped.",
        "restart": "Stop it and start it again (a stopped or failed one: start it).",
        "remove": "Stop it and forget it.",
    }[action]
    app.command(action)(command)


_control("stop")
_control("restart")
_control("remove")
