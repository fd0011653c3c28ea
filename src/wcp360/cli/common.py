"""What every CLI command shares: loading the config and runtime, and the one-line error rule.

Only typer and the standard library are imported at module level, here and in every command
module: `wcp360 --help` and `wcp360 version` must not pay for SQLAlchemy, Alembic, Redis or
wasmtime (they took 7-11 s on a loaded 2-core machine). Each command imports what it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from wcp360.cli.output import terminal_safe

if TYPE_CHECKING:
    from wcp360.authz import Principal
    from wcp360.config import Config, ConfigError
    from wcp360.runtime import Runtime

ConfigDirOption = Annotated[
    Path | None,
    typer.Option("--config-dir", envvar="WCP360_CONFIG_DIR", help="Config directory [default: /etc/wcp360]"),
]
# Set by `main()` (the real command): the first command that loads the config then configures
# logging (importing structlog costs `wcp360 version` nothing); in-process test runners do not.
LOGGING = {"configure": False}

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", envvar="WCP360_DATA_DIR", help="Data directory (created 0700)")
]


def host() -> Principal:
    """The host administrator at the CLI: acts with the admin role's permissions."""
    from wcp360.authz import Principal

    return Principal.host_admin()


def fail(message: str, code: int = 1) -> NoReturn:
    # One line, and nothing in it that the terminal would obey (messages quote user input).
    typer.echo(f"error: {terminal_safe(message)}", err=True)
    raise typer.Exit(code)


def config_from(
    config_dir: Path | None,
    data_dir: Path | None,
    enforce_production: bool = True,
    data_must_exist: bool = True,
    problems: list[ConfigError] | None = None,
) -> Config:
    """The config, or one line and exit 2. Unless the command sets WCP360 up (`serve`, `db
    upgrade`), the data directory must exist: a CLI pointed at the wrong place must not invent a
    new installation (database, keys, audit log) there and report it as empty."""
    from wcp360.config import ConfigError, load_config

    if LOGGING["configure"]:
        import os

        from wcp360.logs import configure_logging

        configure_logging(os.environ.get("WCP360_LOG_LEVEL", "info"))
        LOGGING["configure"] = False
    try:
        config = load_config(config_dir, data_dir, enforce_production=enforce_production, problems=problems)
    except ConfigError as exc:
        fail(str(exc), 2)
    if data_must_exist and not config.data_dir.is_dir():
        fail(
            f"no WCP360 data directory at {config.data_dir} (from --data-dir, WCP360_DATA_DIR or "
            "wcp360.yml paths.data_dir); point there an existing one, or create it with `wcp360 serve` or "
            "`wcp360 db upgrade`; for the dev server's state run `python3 dev.py cli ...`",
            2,
        )
    return config


@contextmanager
def runtime_from(config_dir: Path | None, data_dir: Path | None) -> Iterator[Runtime]:
    """A runtime for one CLI command; domain errors become one line on stderr and exit 1."""
    from wcp360.audit.setup import trail_scope
    from wcp360.errors import WcpError
    from wcp360.request_context import RequestContext, bind_request
    from wcp360.runtime import Runtime

    config = config_from(config_dir, data_dir)
    try:
        rt = Runtime.open(config)
    except (OSError, PermissionError) as exc:
        fail(str(exc))
    try:
        with (
            trail_scope(config, rt.db),
            bind_request(RequestContext(channel="cli", user_agent=" ".join(sys.argv[:3])[:512])),
        ):
            yield rt
    except WcpError as exc:
        fail(exc.detail)
    finally:
        rt.close()


def read_password(value: str | None, prompt: str = "Password") -> str:
    """`--password -` reads one line from stdin; no option prompts (twice) on a terminal."""
    if value == "-":
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            fail("no password on standard input")
        return line
    if value is not None:
        return value
    if not sys.stdin.isatty():
        fail("no password given: use --password - to read it from standard input")
    entered: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return entered
