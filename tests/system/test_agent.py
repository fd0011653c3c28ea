"""The system agent over its real Unix socket: who may connect (SO_PEERCRED), what it refuses,
and that every verb is on the audit trail with the panel's actor and request id."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import struct
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CapturingSink
from tests.helpers import TEST_UID_MAX, TEST_UID_MIN
from wcp360.audit.append_only import is_append_only, set_append_only
from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.request_context import RequestContext, bind_request
from wcp360.system import protocol
from wcp360.system.client import AgentRefused, AgentUnavailable, SocketAgent, append_only_through
from wcp360.system.dispatch import Dispatcher
from wcp360.system.host import HostAgent
from wcp360.system.names import TENANT_NAME
from wcp360.system.protocol import (
    AgentRequest,
    AuditAppendOnly,
    TenantCreate,
    TenantDelete,
    TenantHost,
    TenantSuspend,
)
from wcp360.system.server import AgentServer, bind_socket

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def agent(tmp_path: Path, audit_events: CapturingSink) -> Iterator[tuple[Path, HostAgent, Dispatcher]]:
    tenants = TenantsConfig(
        home_root=tmp_path / "www", archive_dir=tmp_path / "archives", uid_min=TEST_UID_MIN, uid_max=TEST_UID_MAX
    )
    (tmp_path / "log").mkdir()
    host = HostAgent(tenants, FirewallConfig(), tmp_path / "state", audit_dir=tmp_path / "log")
    # Beneath a directory anyone may traverse (pytest's own are root's alone), as /run is.
    reachable = Path(tempfile.mkdtemp(prefix="wcp360-agent-", dir="/tmp"))
    reachable.chmod(0o755)
    path = reachable / "run" / "agent.sock"
    # The panel's group may reach the socket: `nogroup` stands in for it; only uid 0 is allowed.
    dispatcher = Dispatcher(host)
    server = AgentServer(dispatcher, bind_socket(path, NOBODY.pw_gid), allowed_uids={0})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path, host, dispatcher
    server.stop()
    thread.join()
    shutil.rmtree(reachable)


def _as_user(uid: int, gid: int, work: object) -> int:
    """Run `work()` in a child process as uid/gid; its exit status is the child's answer."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os._exit(work())  # type: ignore[operator]
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_socket_and_directory_modes(agent: tuple[Path, HostAgent, Dispatcher]) -> None:
    path, *_ = agent
    sock, directory = os.lstat(path), os.lstat(path.parent)
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o660
    assert (sock.st_uid, sock.st_gid) == (0, NOBODY.pw_gid)
    assert stat.S_IMODE(directory.st_mode) == 0o750 and directory.st_uid == 0


def test_another_uid_is_refused_before_anything_is_read(
    agent: tuple[Path, HostAgent, Dispatcher], audit_events: CapturingSink
) -> None:
    path, *_ = agent
    request = AgentRequest(request_id="r1", actor="attacker", call=TenantCreate(tenant="wtx", limits=TenantLimits()))

    def attempt() -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            try:
                conn.connect(str(path))
            except PermissionError:
                return 10  # the directory (0750, another group) keeps it out already
            try:
                protocol.send(conn, request)
                answer = conn.recv(1)
            except (BrokenPipeError, ConnectionResetError):
                return 0  # hung up on before (or while) the request was sent
            return 0 if answer == b"" else 1

    # As nobody in the socket's group: it reaches the socket, and the agent hangs up unanswered.
    assert _as_user(NOBODY.pw_uid, NOBODY.pw_gid, attempt) == 0
    assert "agent_connection_refused" in audit_events.actions()
    refused = audit_events.of("agent_connection_refused")[-1]
    assert refused.details["uid"] == NOBODY.pw_uid and refused.outcome == "denied"
    # In no group of the socket: the directory alone stops it.
    assert _as_user(NOBODY.pw_uid, 12345, attempt) == 10
    assert not any(e.pw_name == "wtx" for e in pwd.getpwall())


def test_root_is_served_and_the_trail_carries_actor_and_request_id(
    agent: tuple[Path, HostAgent, Dispatcher], audit_events: CapturingSink
) -> None:
    path, *_ = agent
    name = f"wt{uuid.uuid4().hex[:8]}"
    client = SocketAgent(path)
    with bind_request(RequestContext(request_id="req-42", channel="api")):
        host = client.call(TenantCreate(tenant=name, limits=TenantLimits()), actor="user-7")
        assert isinstance(host, TenantHost) and host.state == "active"
        client.call(TenantDelete(tenant=name), actor="user-7")
    created = audit_events.of("agent_tenant_create")[-1]
    assert (created.actor_id, created.request_id, created.channel) == ("user-7", "req-42", "agent")
    assert created.resource_id == name and created.details["uid"] == host.uid
    assert audit_events.of("agent_tenant_delete")[-1].outcome == "success"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        json.dumps({"version": 2, "request_id": "r", "actor": "a", "call": {"verb": "tenant.suspend", "tenant": "ok"}}),
        json.dumps({"version": 1, "request_id": "r", "actor": "a", "call": {"verb": "shell", "command": "id"}}),
        json.dumps(
            {"version": 1, "request_id": "r", "actor": "a", "call": {"verb": "tenant.suspend", "tenant": "../etc"}}
        ),
        json.dumps(
            {"version": 1, "request_id": "r", "actor": "a", "call": {"verb": "tenant.suspend", "tenant": "a;id"}}
        ),
        json.dumps(
            {"version": 1, "request_id": "r\n", "actor": "a", "call": {"verb": "tenant.suspend", "tenant": "ok"}}
        ),
        json.dumps(
            {"version": 1, "request_id": "r", "actor": "a", "call": {"verb": "tenant.suspend", "tenant": "ok", "x": 1}}
        ),
    ],
)
def test_malformed_requests_get_no_answer_and_change_nothing(
    agent: tuple[Path, HostAgent, Dispatcher], audit_events: CapturingSink, raw: bytes | str
) -> None:
    path, *_ = agent
    body = raw.encode() if isinstance(raw, str) else raw
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        conn.sendall(struct.pack(">I", len(body)) + body)
        assert conn.recv(1) == b""
    assert audit_events.of("agent_bad_request")


def test_an_oversized_frame_is_refused_unread(
    agent: tuple[Path, HostAgent, Dispatcher], audit_events: CapturingSink
) -> None:
    path, *_ = agent
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        conn.sendall(struct.pack(">I", protocol.MAX_FRAME + 1))
        assert conn.recv(1) == b""
    assert "frame of" in audit_events.of("agent_bad_request")[-1].details["reason"]


def test_typed_errors_for_valid_requests_the_host_refuses(agent: tuple[Path, HostAgent, Dispatcher]) -> None:
    path, *_ = agent
    client = SocketAgent(path)
    with pytest.raises(AgentRefused) as reserved:
        client.call(TenantCreate(tenant="root", limits=TenantLimits()), actor="a")
    assert reserved.value.code == "invalid"
    with pytest.raises(AgentRefused) as missing:
        client.call(TenantSuspend(tenant="wtnosuchtenant"), actor="a")
    assert missing.value.code == "not_found"


def test_no_agent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AgentUnavailable, match="did not answer"):
        SocketAgent(tmp_path / "absent.sock").call(TenantSuspend(tenant="x"), actor="a")


def test_a_home_root_reached_through_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    tenants = TenantsConfig(home_root=tmp_path / "link" / "www", uid_min=TEST_UID_MIN, uid_max=TEST_UID_MAX)
    host = HostAgent(tenants, FirewallConfig(), tmp_path / "state")
    reply = Dispatcher(host).handle(
        AgentRequest(request_id="r", actor="a", call=TenantCreate(tenant="wtlinked", limits=TenantLimits()))
    )
    assert reply.error is not None and reply.error.code == "invalid" and "symlink" in reply.error.message
    assert not (real / "www").exists()
    assert not any(e.pw_name == "wtlinked" for e in pwd.getpwall())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.text(max_size=40))
def test_tenant_names_admit_only_linux_user_names(name: str) -> None:
    accepted = bool(TENANT_NAME.fullmatch(name))
    if accepted:
        assert name[0].isascii() and name[0].islower() and len(name) <= 32
        assert not set(name) - set("abcdefghijklmnopqrstuvwxyz0123456789_-")
    try:
        TenantSuspend(tenant=name)
    except ValueError:
        assert not accepted
    else:
        assert accepted


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
       lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
       max_leaves=20).map(lambda value: json.dumps(value).encode()))  # fmt: skip
def test_any_frame_is_a_request_or_a_protocol_error(body: bytes) -> None:
    try:
        request = protocol.parse_request(body)
    except protocol.ProtocolError:
        return
    assert request.version == 1


def test_the_audit_logs_attribute_through_the_agent(
    agent: tuple[Path, HostAgent, Dispatcher], tmp_path: Path, audit_events: CapturingSink
) -> None:
    """The unprivileged server protects and rotates its log through the agent's verb."""
    path, _, dispatcher = agent
    log = tmp_path / "log"
    (log / "audit.log").write_text("line\n")
    attribute = append_only_through(SocketAgent(path), log)
    assert attribute is not None
    try:
        assert attribute(log / "audit.log", True) and is_append_only(log / "audit.log")
        with pytest.raises(PermissionError):
            (log / "audit.log").write_text("rewritten")  # not even root may overwrite it now
        assert attribute(log / "audit.log", False) and not is_append_only(log / "audit.log")
    finally:
        set_append_only(log / "audit.log", False)
    dispatcher.settle()
    assert [e.details["on"] for e in audit_events.of("agent_audit_append_only")] == [True, False]
    # Nothing outside the audit directory, no link, nothing but the log's own names.
    elsewhere = tmp_path / "victim"
    elsewhere.write_text("x")
    assert not attribute(elsewhere, True)
    (log / "audit.log.1").symlink_to(elsewhere)
    assert not attribute(log / "audit.log.1", True) and not is_append_only(elsewhere)
    with pytest.raises(ValueError):
        AuditAppendOnly(file="../victim", on=True)
    with pytest.raises(ValueError):
        AuditAppendOnly(file="passwd", on=True)
