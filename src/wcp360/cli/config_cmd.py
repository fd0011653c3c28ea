"""`wcp360 config validate|show`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, config_from
from wcp360.cli.output import terminal_safe

app = typer.Typer(help="Check and display the configuration.", no_args_is_help=True)


@app.command("validate")
def validate(config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Load every file and list every problem in every file (one per line, file:line: key: message),
    then each production hardening problem. Exit 0 only when all is well."""
    from wcp360.config import ConfigError
    from wcp360.config.hardening import production_problems
    from wcp360.config.warnings import config_warnings
    from wcp360.identity.providers import unknown_roles

    problems: list[ConfigError] = []
    config = config_from(config_dir, data_dir, enforce_production=False, data_must_exist=False, problems=problems)
    hardening = production_problems(config) if config.production else []
    for problem in [*problems, *hardening]:
        typer.echo(f"error: {terminal_safe(problem)}", err=True)
    if problems or hardening:
        raise typer.Exit(2)
    for warning in config_warnings(config):
        typer.echo(f"warning: {terminal_safe(warning)}", err=True)
    for problem in unknown_roles(config.auth, frozenset(config.rbac.roles)):
        typer.echo(f"warning: security.yml: {terminal_safe(problem)}", err=True)
    loaded = ", ".join(config.loaded_files) or "none (all defaults)"
    typer.echo(f"config OK ({config.server.mode} mode; files: {loaded})")


@app.command("show")
def show(
    section: Annotated[str | None, typer.Argument(help="One section, e.g. auth or rbac")] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    config = config_from(config_dir, data_dir, enforce_production=False, data_must_exist=False)
    # SecretStr serialises as "**********" in JSON mode, so nothing secret can be printed here.
    data = config.model_dump(mode="json", by_alias=True)
    if section is not None:
        if section not in data:
            typer.echo(f"error: no section {section!r}; sections: {', '.join(sorted(data))}", err=True)
            raise typer.Exit(2)
        data = data[section]
    typer.echo(json.dumps(data, indent=2, sort_keys=True))
