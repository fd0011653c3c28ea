"""`wcp360 modules ...`: the host administrator's view of stored modules: status, risk and where
each compile stands (compiling, ready, failed and why)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, fail, host, runtime_from
from wcp360.cli.output import json_text, table, terminal_safe

if TYPE_CHECKING:
    from wcp360.workloads.views import ModuleView

app = typer.Typer(help="Inspect stored WebAssembly modules.", no_args_is_help=True)

COLUMNS = ("name", "version", "owner", "size", "status", "risk", "compile", "seconds", "id")


def _compile_row(module: ModuleView) -> list[object]:
    compiled = module.compile
    seconds = f"{compiled.seconds:.1f}" if compiled.seconds is not None else ""
    return [
        module.name,
        module.version,
        module.owner_id,
        module.size,
        module.status,
        module.risk_score,
        compiled.state,
        seconds,
        module.id,
    ]


@app.command("list")
def list_modules(
    output: Annotated[Literal["table", "json"], typer.Option("--format")] = "table",
    status: Annotated[str | None, typer.Option("--status", help="active or quarantined")] = None,
    compile_state: Annotated[
        Literal["compiling", "ready", "failed"] | None, typer.Option("--compile-state")
    ] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List modules, newest first, with their compile state (seconds so far while compiling)."""
    with runtime_from(config_dir, data_dir) as rt:
        modules, _ = rt.modules.list_modules(host(), limit=1_000_000, status=status)
    if compile_state is not None:
        modules = [m for m in modules if m.compile.state == compile_state]
    if output == "json":
        typer.echo(json_text([m.model_dump() for m in modules]))
        return
    typer.echo(table(COLUMNS, [_compile_row(m) for m in modules]), nl=False)


@app.command("show")
def show(
    module_id: Annotated[str, typer.Argument(help="The module's id")],
    output: Annotated[Literal["text", "json"], typer.Option("--format")] = "text",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """One module: its findings, and why its compile failed if it did."""
    try:
        key = uuid.UUID(module_id)
    except ValueError:
        fail(f"not a module id: {module_id}", 2)
    with runtime_from(config_dir, data_dir) as rt:
        module = rt.modules.get(host(), key)
    if output == "json":
        typer.echo(json_text(module.model_dump()))
        return
    compiled = module.compile
    lines = [
        f"{module.name} v{module.version}  {module.id}",
        f"owner {module.owner_id}, {module.size} bytes, sha256:{module.digest}",
        f"status {module.status}, risk {module.risk_score}",
        f"compile {compiled.state}"
        + (f", {compiled.seconds:.1f} s" if compiled.seconds is not None else "")
        + (f": {compiled.error}" if compiled.error else ""),
    ]
    lines += [f"  {f['severity']}: {f['rule']}: {f['message']}" for f in module.findings]
    typer.echo("\n".join(terminal_safe(line) for line in lines))
