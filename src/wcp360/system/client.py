"""The panel's one way to the system tier: `AgentClient.call(verb, actor)`.

`SocketAgent` talks to `wcp360 agent` over its Unix socket; `InProcessAgent` runs the same
dispatcher (same validation, same audit events) in the calling process, for development mode,
doing what that process's privileges allow and saying what it could not in each reply.
"""

from __future__ import annotations

import socket
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from wcp360.config import Config
from wcp360.request_context import current_request
from wcp360.system import protocol
from wcp360.system.dispatch import Dispatcher
from wcp360.system.host import HostAgent
from wcp360.system.protocol import (
    AgentReply,
    AgentRequest,
    AuditAppendOnly,
    Call,
    ErrorCode,
    FileState,
    Result,
)

CONNECT_TIMEOUT = 5.0
# A verb may take a while (archiving a large home before deleting it); the agent always answers.
REPLY_TIMEOUT = 3600.0


class AgentRefused(Exception):
    """The agent answered with a typed error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


class AgentUnavailable(Exception):
    """No agent could be reached (or it closed the connection without an answer)."""


class AgentClient(Protocol):
    kind: str  # "socket" or "in_process", for doctor and the replies' readers

    def call(self, call: Call, actor: str) -> Result: ...


def _request(call: Call, actor: str) -> AgentRequest:
    request_id = current_request().request_id or uuid.uuid4().hex
    return AgentRequest(request_id=request_id, actor=actor, call=call)


def _result(reply: AgentReply) -> Result:
    if reply.error is not None:
        raise AgentRefused(reply.error.code, reply.error.message)
    if reply.result is None:
        raise AgentUnavailable("the agent answered without a result")
    return reply.result


class SocketAgent:
    kind = "socket"

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, call: Call, actor: str) -> Result:
        request = _request(call, actor)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(CONNECT_TIMEOUT)
                conn.connect(str(self.path))
                conn.settimeout(REPLY_TIMEOUT)
                protocol.send(conn, request)
                reply = protocol.parse_reply(protocol.receive_bytes(conn))
        except (OSError, protocol.ProtocolError) as exc:
            raise AgentUnavailable(f"the agent at {self.path} did not answer: {exc}") from None
        return _result(reply)


class InProcessAgent:
    kind = "in_process"

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def call(self, call: Call, actor: str) -> Result:
        try:
            # Validated again, as the agent would on receipt: a verb built in code is re-read.
            request = AgentRequest.model_validate_json(_request(call, actor).model_dump_json())
        except ValidationError as exc:
            raise AgentRefused("invalid", str(exc.errors()[0]["msg"])) from None
        return _result(self.dispatcher.handle(request, peer="in-process"))


def agent_listening(path: Path) -> bool:
    """A socket stands at `path` (not probed with a connection: the agent would audit an empty
    one as a bad request). A stale one makes calls fail with AgentUnavailable, which says so."""
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def connect_agent(config: Config) -> AgentClient:
    """The agent this configuration names: the socket's, or (development) one in this process."""
    settings = config.server.agent
    if settings.mode == "socket" or (settings.mode == "auto" and agent_listening(settings.socket)):
        return SocketAgent(settings.socket)
    return InProcessAgent(Dispatcher(host_agent(config, config.data_dir / "agent")))


def host_agent(config: Config, state_dir: Path) -> HostAgent:
    """The agent's host work for this configuration (the agent process's, or in process)."""
    server = config.server
    return HostAgent(
        server.tenants,
        server.firewall,
        state_dir,
        audit_directory(config),
        tls=config.tls,
        panel_upstream=server.listen,
        upload_spool=upload_spool(config),
    )


def upload_spool(config: Config) -> Path:
    """Where the panel leaves uploads for the agent (site.upload): its own data directory's."""
    return config.data_dir / "uploads"


def audit_directory(config: Config) -> Path:
    from wcp360.audit.setup import audit_file

    return audit_file(config)[0]


def append_only_through(agent: AgentClient, directory: Path) -> Callable[[Path, bool], bool] | None:
    """The audit log's attribute setter for a server without CAP_LINUX_IMMUTABLE: the agent's verb.
    None (set directly, or degraded) without an agent process: an in-process agent has no more
    privilege than the server."""
    if not isinstance(agent, SocketAgent):
        return None

    def attribute(path: Path, on: bool) -> bool:
        if path.parent != directory:
            return False
        try:
            state = agent.call(AuditAppendOnly(file=path.name, on=on), "system")
        except (AgentRefused, AgentUnavailable, ValueError):
            return False
        return isinstance(state, FileState) and state.append_only == on

    return attribute
