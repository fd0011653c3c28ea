"""`wcp360 serve`: plan the listener, bootstrap, and run the API under uvicorn."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass

import uvicorn

from wcp360 import audit
from wcp360.api.app import create_app
from wcp360.api.connections import guarded_protocol
from wcp360.audit.config_changes import record_config_changes
from wcp360.audit.setup import trail_scope
from wcp360.config import Config
from wcp360.defense.firewall import TABLE, NftFirewall, allowed_ports
from wcp360.net import is_loopback, parse_listen
from wcp360.runtime import Runtime


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    tls: bool


def plan_listener(config: Config, listen: str | None) -> Listener:
    """Plain HTTP only on loopback: anything else needs tls.yml enabled."""
    host, port = parse_listen(listen or config.server.listen)
    if not config.tls.enabled and not is_loopback(host):
        raise ValueError(f"refusing plain HTTP on {host}: enable TLS in tls.yml or listen on 127.0.0.1 / ::1")
    return Listener(host, port, config.tls.enabled)


def serve(config: Config, listen: str | None = None) -> None:
    listener = plan_listener(config, listen)
    rt = Runtime.open(config)
    try:
        # The IDS reads the audit stream: it is a sink of the server's trail.
        with trail_scope(config, rt.db, forward=True, extra_sinks=[rt.defense.ids]):
            _bootstrap(rt)
            record_config_changes(config)
            audit.record(
                "service_start",
                actor_id="system",
                resource_type="service",
                resource_id="api",
                details={"listen": f"{listener.host}:{listener.port}", "tls": listener.tls},
            )
            _firewall(rt)
            rt.defense.bans.start_refresher()
            rt.executor.warm()
            rt.executor.resume_compiles()  # modules a stopped server left compiling
            if config.server.scheduler.enabled:
                rt.scheduler.start()
            try:
                _run(rt, listener)
            finally:
                audit.record("service_stop", actor_id="system", resource_type="service", resource_id="api")
    finally:
        rt.close()


def _firewall(rt: Runtime) -> None:
    """wcp360.yml `firewall: enabled: true`: install the nftables table and mirror every ban into it
    (bans made by the CLI, the IDS or another server reach it through the ban list's refresher)."""
    settings = rt.config.server.firewall
    if not settings.enabled:
        return
    status = rt.defense.attach_firewall(NftFirewall(settings))
    audit.record(
        "firewall_apply",
        actor_id="system",
        outcome="success" if status.active else "failure",
        resource_type="firewall",
        resource_id=f"inet {TABLE}",
        details={"active": status.active, "reason": status.reason, "ports": allowed_ports(settings)},
    )


def _bootstrap(rt: Runtime) -> None:
    generated = rt.bootstrap_admin()
    if generated is not None:
        # Printed exactly once, on the run that creates the account; never logged.
        print(
            f"Created the first admin account '{rt.config.server.bootstrap_admin.username}'.\n"
            f"Its password (shown only now): {generated}",
            file=sys.stderr,
            flush=True,
        )


def _run(rt: Runtime, listener: Listener) -> None:
    tls = rt.config.tls
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the handler that
    # was installed before it; make that handler a normal exit so `service_stop` is recorded.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http = rt.config.server.http
    uvicorn.run(
        create_app(rt),
        http=guarded_protocol(http.header_timeout.total_seconds(), http.max_connections_per_address),
        host=listener.host,
        port=listener.port,
        server_header=False,
        date_header=True,
        proxy_headers=False,  # client addresses come from wcp360.api.client_ip, not uvicorn
        access_log=False,
        log_level="warning",
        ssl_certfile=str(tls.cert_file) if listener.tls and tls.cert_file else None,
        ssl_keyfile=str(tls.key_file) if listener.tls and tls.key_file else None,
    )
