"""The `wcp360` command."""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer

from wcp360 import __version__
from wcp360.cli import (
    admin,
    agent_cmd,
    audit_cmd,
    config_cmd,
    db,
    ids_cmd,
    modules_cmd,
    scheduler_cmd,
    site_cmd,
    tenant_cmd,
)
from wcp360.cli.common import LOGGING, ConfigDirOption, DataDirOption, config_from, fail
from wcp360.cli.output import terminal_safe

app = typer.Typer(
    help="WCP360: security-first multi-tenant hosting control plane.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(admin.app, name="admin")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(config_cmd.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(ids_cmd.app, name="ids")
app.add_typer(modules_cmd.app, name="modules")
app.add_typer(scheduler_cmd.app, name="scheduler")
app.add_typer(site_cmd.app, name="site")
app.add_typer(tenant_cmd.app, name="tenant")
app.command("agent")(agent_cmd.agent)
app.command("install")(agent_cmd.install)


@app.command("serve")
def serve(
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT [default: from wcp360.yml]")] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the API server."""
    from wcp360.server import serve as run

    config = config_from(config_dir, data_dir, data_must_exist=False)  # the first start creates it
    try:
        run(config, listen)
    except ValueError as exc:
        fail(str(exc), 2)


@app.command("doctor")
def doctor(
    output: Annotated[Literal["table", "json"], typer.Option("--format")] = "table",
    strict: Annotated[bool, typer.Option("--strict", help="exit 3 when there are warnings (and no failure)")] = False,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Check what this host gives WCP360 and audit its security (seed 000 §6): database, Redis,
    Landlock, seccomp, cgroups, PSI, ports, firewall, the agent, users, homes, units, audit log.
    Exit 1 when a check fails."""
    import json
    from dataclasses import asdict

    from wcp360.doctor import run_checks

    checks = run_checks(config_from(config_dir, data_dir))
    if output == "json":
        typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            line = f"{check.status:<4}  {check.id:<12} {check.name:<{width}}  {terminal_safe(check.detail)}"
            if check.remedy:
                line += f"  -> {terminal_safe(check.remedy)}"
            typer.echo(line)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
    if strict and any(c.status == "warn" for c in checks):
        raise typer.Exit(3)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    # Everything WCP360 creates (database, secrets, logs) is private to its user.
    os.umask(0o077)
    LOGGING["configure"] = True  # done when a command loads the config (cli/common.config_from)
    app()
