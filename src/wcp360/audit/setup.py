"""Build the trail that audit.yml describes: the chained file, its writer, and the copies."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from wcp360.audit.append_only import set_append_only
from wcp360.audit.db_sink import DatabaseSink
from wcp360.audit.forwarder import Forwarder
from wcp360.audit.logfile import AuditLogFile
from wcp360.audit.signing import SigningKeys
from wcp360.audit.syslog import SyslogTransport
from wcp360.audit.trail import AuditSink, LogSink, Trail, current_trail, install
from wcp360.audit.witness import DatabaseWitness
from wcp360.audit.writer import AuditWriter
from wcp360.config.audit import DatabaseDestination, FileDestination, SyslogDestination
from wcp360.keys import ensure_private_dir

if TYPE_CHECKING:
    from wcp360.config import Config
    from wcp360.store.database import Database

ALWAYS_SENSITIVE = ("password", "secret", "token")


def audit_file(config: Config) -> tuple[Path, str, FileDestination]:
    """Directory, file name and settings of the file destination (the default one if none is listed)."""
    destination = next(
        (d for d in config.audit.destinations if isinstance(d, FileDestination)), FileDestination(type="file")
    )
    path = destination.path if destination.path.is_absolute() else config.log_dir / destination.path
    return path.parent, path.name, destination


def signing_keys(config: Config) -> SigningKeys:
    return SigningKeys(config.secrets_dir / "audit")


def open_trail(
    config: Config,
    db: Database | None = None,
    forward: bool = False,
    log_events: bool = False,
    extra_sinks: list[AuditSink] | None = None,
    protect: bool = True,
    attribute: Callable[[Path, bool], bool] | None = None,
) -> Trail:
    """Install the trail for this process. `forward` (the server) also starts the syslog/DB copies.
    `attribute` sets and lifts the append-only attribute (default: directly, which needs
    CAP_LINUX_IMMUTABLE; the unprivileged server passes the agent's verb); `protect: False` never
    sets it."""
    sensitive = tuple(config.audit.sensitive_fields) if config.audit.filter_sensitive_data else ()
    sensitive = tuple(sorted({*sensitive, *ALWAYS_SENSITIVE}))
    sinks: list[AuditSink] = ([LogSink()] if log_events else []) + list(extra_sinks or [])
    if not config.audit.enabled:
        return install(sinks, sensitive)
    directory, name, destination = audit_file(config)
    logfile = AuditLogFile(
        directory,
        signing_keys(config),
        max_size=destination.rotation.max_size,
        max_files=destination.rotation.max_files,
        compress=destination.rotation.compress,
        checkpoint_every=config.audit.checkpoints.every_records,
        name=name,
        # Production only: in dev mode a developer must be able to delete the data dir.
        append_only=destination.append_only and config.production and protect,
        attribute=attribute or set_append_only,
    )
    if db is not None:
        logfile.on_checkpoint.append(DatabaseWitness(db, name).record)
    writer = AuditWriter(
        logfile, fsync=destination.fsync, checkpoint_seconds=config.audit.checkpoints.every_seconds.total_seconds()
    )
    forwarders: list[Forwarder] = []
    if forward:
        wake = threading.Condition()
        writer.listeners.append(wake)
        cursors = ensure_private_dir(config.data_dir / "audit-cursors")
        for destination_config in config.audit.destinations:
            if isinstance(destination_config, SyslogDestination):
                transport = SyslogTransport(
                    destination_config.address, destination_config.facility, destination_config.tag
                )
                forwarders.append(Forwarder("syslog", directory, name, transport.deliver, cursors / "syslog", wake))
            elif isinstance(destination_config, DatabaseDestination) and db is not None:
                forwarders.append(
                    Forwarder("database", directory, name, DatabaseSink(db).deliver, cursors / "database", wake)
                )
    trail = install(sinks, sensitive, writer, forwarders)
    for forwarder in forwarders:
        forwarder.start()
    return trail


@contextmanager
def trail_scope(
    config: Config,
    db: Database | None = None,
    forward: bool = False,
    log_events: bool = False,
    extra_sinks: list[AuditSink] | None = None,
    protect: bool = True,
    attribute: Callable[[Path, bool], bool] | None = None,
) -> Iterator[Trail]:
    """The trail for one process lifetime (or one CLI command): closed with a final checkpoint."""
    previous = current_trail()
    trail = open_trail(config, db, forward, log_events, extra_sinks, protect, attribute)
    try:
        yield trail
    finally:
        trail.close()
        install(previous.sinks, previous.sensitive, previous.writer, previous.forwarders)
