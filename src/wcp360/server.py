"""`wcp360 serve`: plan the listener, bootstrap, and run the API under uvicorn."""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from wcp360 import audit
from wcp360.api.app import create_app
from wcp360.api.connections import guarded_protocol
from wcp360.audit.config_changes import record_config_changes
from wcp360.audit.setup import trail_scope
from wcp360.config import Config
from wcp360.defense.firewall import TABLE, allowed_ports
from wcp360.net import is_loopback, parse_listen
from wcp360.privileges import DropFailed, drop_to, service_account, shed_capabilities
from wcp360.runtime import Runtime
from wcp360.system.client import append_only_through, audit_directory
from wcp360.system.firewall import AgentFirewall


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
    # As root: bind the listener and read the TLS files, then drop to the service user before
    # anything else (the database, the secrets, the audit log) is opened, and before any request.
    app = _LateApp()
    server = uvicorn.Server(_uvicorn_config(config, listener, app))
    sock = server.config.bind_socket()
    server.config.load()
    privileges = _drop_privileges(config)
    rt = Runtime.open(config)
    app.app = create_app(rt)
    try:
        # The IDS reads the audit stream: it is a sink of the server's trail.
        # Unprivileged, the server sets and lifts its log's append-only attribute through the agent.
        attribute = append_only_through(rt.agent, audit_directory(config))
        with trail_scope(config, rt.db, forward=True, extra_sinks=[rt.defense.ids], attribute=attribute):
            _bootstrap(rt)
            record_config_changes(config)
            audit.record(
                "service_start",
                actor_id="system",
                resource_type="service",
                resource_id="api",
                details={"listen": f"{listener.host}:{listener.port}", "tls": listener.tls, "runs_as": privileges},
            )
            _firewall(rt)
            rt.defense.bans.start_refresher()
            rt.executor.warm()
            rt.executor.resume_compiles()  # modules a stopped server left compiling
            if config.server.scheduler.enabled:
                rt.scheduler.start()
            if rt.directory_sweep is not None:
                rt.directory_sweep.start()
            try:
                _run(server, sock)
            finally:
                audit.record("service_stop", actor_id="system", resource_type="service", resource_id="api")
    finally:
        rt.close()


class _LateApp:
    """The ASGI app, built after the privilege drop: uvicorn's config (and its TLS context, read
    as root) is loaded before the runtime exists."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


def _drop_privileges(config: Config) -> str:
    """Who the server runs as: `server.user` after dropping root, or the unprivileged invoker.
    Production refuses to serve as root; development mode (no service user made) says it does."""
    if os.geteuid() != 0:
        shed_capabilities()
        return f"uid {os.geteuid()} (started unprivileged)"
    name = config.server.user
    try:
        account = service_account(name)
    except DropFailed as exc:
        if config.production:
            raise SystemExit(f"wcp360 serve: refusing to serve as root: {exc}") from None
        print(f"wcp360 serve: WARNING: serving as root in dev mode ({exc})", file=sys.stderr, flush=True)
        return "root (dev mode, no service user)"
    drop_to(account)
    return f"{account.name} (uid {account.uid}, dropped from root)"


def _firewall(rt: Runtime) -> None:
    """wcp360.yml `firewall: enabled: true`: have the system agent install the nftables table and
    mirror every ban into it (bans made by the CLI, the IDS or another server reach it through the
    ban list's refresher)."""
    settings = rt.config.server.firewall
    if not settings.enabled:
        return
    status = rt.defense.attach_firewall(AgentFirewall(rt.agent))
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


def _uvicorn_config(config: Config, listener: Listener, app: _LateApp) -> uvicorn.Config:
    tls = config.tls
    http = config.server.http
    return uvicorn.Config(
        app,
        http=guarded_protocol(http.header_timeout.total_seconds(), http.max_connections_per_address),
        host=listener.host,
        port=listener.port,
        server_header=False,
        date_header=True,
        proxy_headers=False,  # client addresses come from wcp360.api.client_ip, not uvicorn
        access_log=False,
        log_level="warning",
        lifespan="off",  # the runtime is started and stopped around the server, not by it
        ssl_certfile=str(tls.cert_file) if listener.tls and tls.cert_file else None,
        ssl_keyfile=str(tls.key_file) if listener.tls and tls.key_file else None,
    )


def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the handler that
    # was installed before it; make that handler a normal exit so `service_stop` is recorded.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run(sockets=[sock])
