"""`wcp360 agent` (the system tier) and `wcp360 install` (the production layout), both as root."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wcp360.cli.common import ConfigDirOption, DataDirOption, config_from, fail

if TYPE_CHECKING:
    from wcp360.system.dispatch import Dispatcher
    from wcp360.system.host import HostAgent

UNITS = Path(__file__).resolve().parents[3] / "packaging"


def agent(config_dir: ConfigDirOption = None, data_dir: DataDirOption = None) -> None:
    """Run the system agent: root, the only process that does privileged work, for the panel
    (the `wcp360.yml user`) and root only, over the socket `agent.socket`."""
    from wcp360.audit.setup import trail_scope
    from wcp360.defense.alerts import Alerter, senders_for
    from wcp360.privileges import DropFailed, group_id, service_account
    from wcp360.system.client import host_agent
    from wcp360.system.dispatch import Dispatcher
    from wcp360.system.server import AgentServer, bind_socket

    if os.geteuid() != 0:
        fail("the agent runs as root (it makes Linux users, owns tenant homes, installs the firewall)", 2)
    config = config_from(config_dir, data_dir, data_must_exist=False)
    settings = config.server.agent
    try:
        service = service_account(config.server.user)
    except DropFailed as exc:
        fail(str(exc), 2)
    host = host_agent(config, settings.state_dir)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    listener = bind_socket(settings.socket, group_id(config.server.user))
    dispatcher = Dispatcher(host)
    server = AgentServer(dispatcher, listener, allowed_uids={0, service.uid})
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    from wcp360 import audit

    with trail_scope(config):
        host.prune_archives()
        host.revive_all()
        sweeping = threading.Event()
        threading.Thread(target=_rotate_due, args=(host, dispatcher, sweeping), daemon=True).start()
        ids = config.intrusion_detection
        alerter = Alerter(senders_for(ids.alerts), ids.alert_dedupe.total_seconds())
        threading.Thread(target=_renew_certificates, args=(host, dispatcher, alerter, sweeping), daemon=True).start()
        audit.record(
            "agent_start",
            actor_id="system",
            resource_type="agent",
            resource_id=str(settings.socket),
            details={"serves_uid": service.uid, "pid": os.getpid()},
        )
        print(f"wcp360 agent: listening on {settings.socket} for uid 0 and {service.uid}", flush=True)
        try:
            server.serve_forever()
        finally:
            sweeping.set()
            host.close()
            dispatcher.settle()
            audit.record("agent_stop", actor_id="system", resource_type="agent", resource_id=str(settings.socket))


ROTATION_SWEEP_SECONDS = 3600
RENEWAL_SWEEP_SECONDS = 300  # failed issuances come due at their own backoff; renewals within days


def _renew_certificates(
    host: HostAgent, dispatcher: Dispatcher, alert: Callable[[str, str, dict[str, object]], None], stop: threading.Event
) -> None:
    """At the agent's start (nginx serves the sites again after a reboot) and every few minutes:
    certificates missing, failed and due for another try, or within acme.renew_before of expiry,
    issued again; each audited, each failure alerted; nginx's logs rotated past their size."""
    from wcp360 import audit

    first = True
    while first or not stop.wait(RENEWAL_SWEEP_SECONDS):
        try:
            with dispatcher.serialised():
                if first:
                    host.websites.serve_if_any()
                outcomes = host.websites.renew_due()
                rotated = host.websites.rotate_logs()
        except Exception as exc:  # nginx refused, or a bug: said, and tried again
            audit.record(
                "agent_certificate_renew", actor_id="system", outcome="failure", resource_type="agent",
                details={"reason": str(exc)[:300]},
            )  # fmt: skip
            alert("certificate_renewal", "agent", {"reason": str(exc)[:300]})
            outcomes, rotated = [], []
        if rotated:
            audit.record(
                "agent_site_logs_rotated", actor_id="system", resource_type="agent",
                details={"logs": rotated[:50], "limit": "tenants.websites.log_max_size"},
            )  # fmt: skip
        first = False
        for outcome in outcomes:
            details: dict[str, object] = {"site": outcome.site, "reason": outcome.error}
            audit.record(
                "agent_certificate_renew", actor_id="system", outcome="success" if outcome.ok else "failure",
                resource_type="tenant", resource_id=outcome.tenant or None, details=details,
            )  # fmt: skip
            if not outcome.ok:
                alert("certificate_renewal", f"{outcome.tenant}/{outcome.site}", details)


def _rotate_due(host: HostAgent, dispatcher: Dispatcher, stop: threading.Event) -> None:
    """Hourly: database passwords older than tenants.databases.password_max_age rotated, and
    databases over tenants.databases.max_size restricted (one verb at a time with the others),
    each audited, never with a password."""
    from wcp360 import audit

    while not stop.wait(ROTATION_SWEEP_SECONDS):
        try:
            with dispatcher.serialised():
                rotated = host.rotate_due_databases()
                resized = host.enforce_database_sizes()
        except Exception as exc:  # a server down this hour: said, and tried again next hour
            audit.record(
                "agent_database_rotate_due", actor_id="system", outcome="failure", resource_type="agent",
                details={"reason": str(exc)[:300]},
            )  # fmt: skip
            continue
        for tenant, made in rotated:
            audit.record(
                "agent_database_rotate_due", actor_id="system", resource_type="tenant", resource_id=tenant,
                details={"engine": made.engine, "database": made.database},
            )  # fmt: skip
        for tenant, engine, database, over in resized:
            audit.record(
                "agent_database_over_size" if over else "agent_database_under_size", actor_id="system",
                resource_type="tenant", resource_id=tenant,
                details={"engine": engine, "database": database, "limit": "tenants.databases.max_size"},
            )  # fmt: skip


def install(
    units_dir: Annotated[Path, typer.Option("--units-dir", help="where the systemd units go")] = Path(
        "/etc/systemd/system"
    ),
    config_dir: ConfigDirOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create the service user and the directories with the seed's owners and modes, and write the
    systemd units (idempotent: run it again after changing wcp360.yml)."""
    from wcp360.install import install_layout
    from wcp360.system.accounts import HostCommandFailed

    if os.geteuid() != 0:
        fail("install runs as root (it creates the service user and root-owned directories)", 2)
    config = config_from(config_dir, data_dir, data_must_exist=False)
    try:
        for line in install_layout(config, units_dir, UNITS):
            typer.echo(line)
    except (OSError, HostCommandFailed) as exc:
        fail(f"install: {exc}")
