"""`wcp360 audit ...`: verify, search and follow the trail; export and rotate the signing key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, config_from, fail
from wcp360.cli.output import json_text, table

if TYPE_CHECKING:
    from wcp360.audit.witness import Anchor
    from wcp360.config import Config

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@app.command("verify")
def verify(
    pubkey: Annotated[Path | None, typer.Option("--pubkey", help="PEM public key(s) to trust")] = None,
    from_seq: Annotated[int | None, typer.Option("--from", help="Report from this seq on")] = None,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Check the chain and every checkpoint signature; exit 1 at the first problem."""
    from wcp360.audit.setup import audit_file, signing_keys
    from wcp360.audit.signing import load_public_keys
    from wcp360.audit.verify import verify as verify_log

    config = config_from(config_dir, data_dir)
    directory, name, _ = audit_file(config)
    try:
        keys = load_public_keys(pubkey.read_text()) if pubkey else signing_keys(config).public_keys()
    except (OSError, ValueError) as exc:
        fail(f"cannot read public keys: {exc}")
    if not keys:
        fail("no public keys to verify with")
    report = verify_log(directory, keys, from_seq, name, copies_of_the_head(config, name))
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if report.problem is not None:
        typer.echo(f"FAILED: {report.problem}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"OK: {report.events} events (seq {report.first_seq}..{report.last_seq}), "
        f"{report.checkpoints} signed checkpoints, last signed seq {report.last_signed_seq}"
    )


def copies_of_the_head(config: Config, name: str) -> tuple[Anchor, ...]:
    """The witness and the database copy's newest event: what a cut-back log must still contain."""
    from wcp360.audit.witness import DatabaseWitness, database_copy_anchor
    from wcp360.store.database import Database

    try:
        db = Database.open(config.database, config.data_dir)
    except Exception as exc:
        fail(f"cannot open the database to compare the log with its witness: {exc}")
    try:
        found = [DatabaseWitness(db, name).anchor(), database_copy_anchor(db)]
    except Exception as exc:  # an old schema, or the database is away: say so, do not pass silently
        fail(f"cannot read the audit witness from the database: {str(exc).splitlines()[0]}")
    finally:
        db.dispose()
    return tuple(anchor for anchor in found if anchor is not None)


@app.command("export-key")
def export_key(config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Print the public key(s) that verify the checkpoints (current last). Keep a copy off the host."""
    from wcp360.audit.setup import signing_keys

    typer.echo(signing_keys(config_from(config_dir, data_dir)).export(), nl=False)


@app.command("rotate-key")
def rotate_key(config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Start signing with a new key; older checkpoints stay verifiable with the old public key."""
    from wcp360 import audit
    from wcp360.audit.setup import signing_keys, trail_scope

    config = config_from(config_dir, data_dir)
    keys = signing_keys(config)
    old = keys.key_id
    with trail_scope(config):
        # Sign what the old key covers first, then switch.
        audit.current_trail().writer.logfile.checkpoint()  # type: ignore[union-attr]
        new = keys.rotate()
        audit.record(
            "audit_key_rotate",
            actor_id="host",
            resource_type="audit_key",
            resource_id=new,
            details={"previous_key_id": old},
        )
    typer.echo(f"now signing with key {new} (previous {old}); export the new public key")


Format = Literal["table", "json"]


@app.command("search")
def search(
    action: Annotated[str | None, typer.Option("--action")] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    outcome: Annotated[str | None, typer.Option("--outcome")] = None,
    since: Annotated[str | None, typer.Option("--since", help="RFC 3339 time or date")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
    output: Annotated[Format, typer.Option("--format")] = "table",
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Events matching every filter given, oldest first (the last LIMIT)."""
    from wcp360.audit.pages import newest_first
    from wcp360.audit.search import EventFilter, parse_moment
    from wcp360.audit.setup import audit_file

    config = config_from(config_dir, data_dir)
    try:
        where = EventFilter(
            action, actor, outcome, parse_moment(since) if since else None, parse_moment(until) if until else None
        )
    except ValueError as exc:
        fail(f"invalid time: {exc}")
    directory, name, _ = audit_file(config)
    found = newest_first(directory, where, limit, name=name).items[::-1]  # the same reader as the API
    typer.echo(render(found, output), nl=False)


@app.command("tail")
def tail(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events")] = False,
    lines: Annotated[int, typer.Option("-n", min=0)] = 20,
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The last events as JSON lines; with -f, follow new ones (Ctrl-C to stop)."""
    from wcp360.audit.pages import events_backwards
    from wcp360.audit.setup import audit_file
    from wcp360.audit.tail import LogTail

    config = config_from(config_dir, data_dir)
    directory, name, _ = audit_file(config)
    events: list[dict[str, Any]] = []
    for record in events_backwards(directory, name):  # the last lines only, read from the end
        if len(events) >= max(lines, 1):
            break
        events.insert(0, record)
    for record in events[-lines:] if lines else []:
        typer.echo(json_text(record, indent=None))
    if not follow:
        return
    follower = LogTail(directory, name, after_seq=int(events[-1]["seq"]) if events else 0)
    try:
        while True:
            for record in follower.read():
                typer.echo(json_text(record, indent=None))
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


COLUMNS = ("seq", "ts", "action", "outcome", "actor_id", "resource_type", "resource_id", "ip_address")


def render(records: list[dict[str, object]], output: str) -> str:
    if output == "json":
        return json_text(records) + "\n"
    return table(COLUMNS, ([record.get(c) for c in COLUMNS] for record in records), width=200)
