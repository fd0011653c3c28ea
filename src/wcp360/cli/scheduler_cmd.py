"""`wcp360 scheduler run`: a scheduler process without the API (servers run one each as well)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, runtime_from

app = typer.Typer(help="Scheduled module runs.", no_args_is_help=True)


@app.command("run")
def run(
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="stop after this long [default: until SIGTERM]")
    ] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Claim and run due task occurrences until stopped; prints what this process claimed."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with runtime_from(config_dir, data_dir) as rt:
        rt.scheduler.start()
        typer.echo("scheduler started")  # a readiness line for whoever supervises this process
        stop.wait(seconds)
        rt.scheduler.stop()
        rt.executor.close(drain=True)  # the runs this process claimed finish before it exits
        typer.echo(f"claimed={rt.scheduler.claimed} conflicts={rt.scheduler.conflicts}")
