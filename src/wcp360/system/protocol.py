"""The agent's protocol: versioned, typed, small.

One request per connection: a 4-byte big-endian length, then a JSON object (an `AgentRequest`);
the agent answers the same way with an `AgentReply`. Every verb is a model with typed, bounded
arguments, validated by the client before sending and again by the agent on receipt (the agent
trusts nothing the panel says). No verb takes a path, a shell string or a command: the agent
derives every path from a validated name beneath a root its own configuration names.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from wcp360.config.server import TenantLimits
from wcp360.system.names import TENANT_NAME
from wcp360.system.syscalls import RuntimeClass
from wcp360.views import View

PROTOCOL_VERSION: Literal[1] = 1
MAX_FRAME = 1024 * 1024  # a firewall sync of ~20,000 bans; anything bigger is refused unread
_LENGTH = struct.Struct(">I")

TenantName = Annotated[str, Field(pattern=TENANT_NAME.pattern)]
# A request id as the API's middleware makes them, or the CLI's; printable, bounded.
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
# Who asked, on the panel side: a user id, `host:<name>`, `system`, `ids`.
Actor = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]


class TenantCreate(View):
    verb: Literal["tenant.create"] = "tenant.create"
    tenant: TenantName
    limits: TenantLimits


class TenantSuspend(View):
    verb: Literal["tenant.suspend"] = "tenant.suspend"
    tenant: TenantName


class TenantResume(View):
    verb: Literal["tenant.resume"] = "tenant.resume"
    tenant: TenantName


class TenantDelete(View):
    verb: Literal["tenant.delete"] = "tenant.delete"
    tenant: TenantName


class TenantSetLimits(View):
    verb: Literal["tenant.set_limits"] = "tenant.set_limits"
    tenant: TenantName
    limits: TenantLimits


# A command for the jail: an argument list run inside it, never a shell string for the host.
Argv = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")]],
    Field(min_length=1, max_length=64),
]
ProcessName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]


class TenantRun(View):
    """Run one command in the tenant's jail, as the tenant, to its end (a job)."""

    verb: Literal["tenant.run"] = "tenant.run"
    tenant: TenantName
    argv: Argv
    timeout: Annotated[int, Field(ge=1, le=3600)] = 60
    network: bool = False
    runtime: RuntimeClass = "static"


class ProcessSpec(View):
    """A long-running process of a tenant, supervised by the agent. `php` runs the tenant's own
    php-fpm pool (the agent writes its configuration; no argv); `node` and `static` run `argv`.
    Each gets `$SOCKET`, a Unix socket path in the tenant's `run/` to listen on."""

    name: ProcessName
    runtime: RuntimeClass
    argv: Argv | None = None
    network: bool = False

    @model_validator(mode="after")
    def _argv_by_runtime(self) -> ProcessSpec:
        if self.runtime == "php" and self.argv is not None:
            raise ValueError("a php process runs the tenant's php-fpm pool; it takes no argv")
        if self.runtime != "php" and self.argv is None:
            raise ValueError(f"a {self.runtime} process needs argv")
        return self


class ProcessStart(View):
    """Declare a process (or replace its declaration) and start it."""

    verb: Literal["process.start"] = "process.start"
    tenant: TenantName
    process: ProcessSpec


class ProcessControl(View):
    verb: Literal["process.control"] = "process.control"
    tenant: TenantName
    name: ProcessName
    action: Literal["stop", "start", "restart", "remove"]


class ProcessList(View):
    """The tenant's processes and its resource usage."""

    verb: Literal["process.list"] = "process.list"
    tenant: TenantName


DatabaseEngineName = Literal["mariadb", "postgresql"]
# The tenant's part of the name (the server's name is `<tenant>_<part>`); databases.py checks it again.
DatabasePart = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,23}$")]


class DatabaseCreate(View):
    """A database and its one user, the user's password made by the agent and answered once."""

    verb: Literal["database.create"] = "database.create"
    tenant: TenantName
    engine: DatabaseEngineName
    name: DatabasePart


class DatabaseRotate(View):
    verb: Literal["database.rotate"] = "database.rotate"
    tenant: TenantName
    engine: DatabaseEngineName
    name: DatabasePart


class DatabaseDrop(View):
    verb: Literal["database.drop"] = "database.drop"
    tenant: TenantName
    engine: DatabaseEngineName
    name: DatabasePart


class DatabaseList(View):
    verb: Literal["database.list"] = "database.list"
    tenant: TenantName


class Ban(View):
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    expires_in: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None  # seconds; None: permanent


SiteName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
SiteKind = Literal["static", "php", "proxy"]
# Beneath the tenant's public/: names of letters, digits, `.`, `_`, `-` that do not start with a
# dot (so never `.`, `..` or a hidden directory), at most eight deep.
_ROOT_PART = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"
SiteRoot = Annotated[str, Field(pattern=rf"^{_ROOT_PART}(/{_ROOT_PART}){{0,7}}$")]


class SiteSpec(View):
    """A website: its names (validated and normalised by the agent), what serves it, where its
    files are (`root` beneath the tenant's public/; default: the site's name)."""

    name: SiteName
    domains: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(min_length=1, max_length=100)]
    kind: SiteKind = "static"
    root: SiteRoot | None = None
    process: ProcessName | None = None  # php: the tenant's php process; proxy: its app
    autoindex: bool = False
    hsts: bool = True

    @model_validator(mode="after")
    def _process_by_kind(self) -> SiteSpec:
        if self.kind == "static" and self.process is not None:
            raise ValueError("a static site is served by nginx alone; it takes no process")
        if self.kind != "static" and self.process is None:
            raise ValueError(f"a {self.kind} site needs the process that serves it")
        return self


class SiteCreate(View):
    verb: Literal["site.create"] = "site.create"
    tenant: TenantName
    site: SiteSpec


class SiteDelete(View):
    """Remove the site's configuration and revoke its certificate; its files stay in the home."""

    verb: Literal["site.delete"] = "site.delete"
    tenant: TenantName
    name: SiteName


class SiteCertify(View):
    """Issue (or renew) the site's certificate now."""

    verb: Literal["site.certify"] = "site.certify"
    tenant: TenantName
    name: SiteName


class SiteList(View):
    verb: Literal["site.list"] = "site.list"
    tenant: TenantName


# An upload the panel wrote to its spool (the agent opens it there without following a link).
StagedName = Annotated[str, Field(pattern=r"^upload-[a-f0-9]{32}$")]
UploadPath = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*$")]


class SiteUpload(View):
    """Put a file, or an archive's entries, beneath the site's document root."""

    verb: Literal["site.upload"] = "site.upload"
    tenant: TenantName
    name: SiteName
    staged: StagedName
    format: Literal["file", "zip", "tar"]
    # A file: its path beneath the root; an archive: the directory it unpacks into ("" = the root).
    path: UploadPath = ""


class FirewallSync(View):
    """The whole ban list: the agent replaces its table's sets with exactly these (atomically)."""

    verb: Literal["firewall.sync"] = "firewall.sync"
    bans: Annotated[list[Ban], Field(max_length=20_000)]


class AuditAppendOnly(View):
    """Set or lift `chattr +a` on one file of the audit log's directory (the server rotating its
    log, which it may not do itself without CAP_LINUX_IMMUTABLE)."""

    verb: Literal["audit.append_only"] = "audit.append_only"
    file: Annotated[str, Field(pattern=r"^audit[A-Za-z0-9._-]{0,120}$")]
    on: bool


Call = Annotated[
    TenantCreate
    | TenantSuspend
    | TenantResume
    | TenantDelete
    | TenantSetLimits
    | TenantRun
    | ProcessStart
    | ProcessControl
    | ProcessList
    | DatabaseCreate
    | DatabaseRotate
    | DatabaseDrop
    | DatabaseList
    | SiteCreate
    | SiteDelete
    | SiteCertify
    | SiteList
    | SiteUpload
    | FirewallSync
    | AuditAppendOnly,
    Field(discriminator="verb"),
]


class AgentRequest(View):
    version: Literal[1] = PROTOCOL_VERSION
    request_id: RequestId
    actor: Actor
    call: Call


class TenantHost(View):
    """A tenant as the host has it."""

    name: str
    uid: int
    gid: int
    home: str
    state: Literal["active", "suspended", "deleted"]
    # What the agent could not do with the privileges it has (in-process development mode).
    degraded: list[str] = []
    archive: str | None = None  # tenant.delete: where the home was archived


class FirewallState(View):
    active: bool
    bans: int
    reason: str


class JobOutcome(View):
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool


ProcessStatus = Literal["starting", "running", "backoff", "stopped", "failed"]


class ProcessState(View):
    name: str
    runtime: RuntimeClass
    argv: list[str] | None
    network: bool
    status: ProcessStatus
    pid: int | None  # the jail's bubblewrap process on the host
    restarts: int  # since the last start asked for
    last_exit: int | None
    socket: str  # where it listens (in the tenant's run/)
    log: str  # where its output goes (the tenant's logs/), rotated


class TenantUsage(View):
    """From the tenant's cgroups; None where the host keeps no such counter."""

    cpu_seconds: float | None
    memory_bytes: int | None
    pids: int | None
    pressure: dict[str, str] = {}  # cgroup v2 PSI: "some avg10=... avg60=..." per resource


class TenantProcesses(View):
    tenant: str
    processes: list[ProcessState]
    usage: TenantUsage


class DatabaseHost(View):
    """A tenant's database as the server has it. `password` only in the answer to create and
    rotate (shown once to the owner; the agent keeps no copy)."""

    engine: DatabaseEngineName
    database: str
    user: str
    # Where to connect: the server's socket (MariaDB) or socket directory (PostgreSQL).
    socket: str
    locked: bool = False
    size_bytes: int | None = None  # in database.list
    over_size: bool = False  # over tenants.databases.max_size: writes refused until back under
    password: str | None = None


class TenantDatabaseList(View):
    tenant: str
    databases: list[DatabaseHost]


CertificateStatus = Literal["pending", "valid", "failed", "self_signed"]


class CertificateState(View):
    status: CertificateStatus
    not_after: str | None = None  # ISO 8601, UTC
    issuer: str | None = None
    error: str | None = None  # the last failure, while retrying
    failures: int = 0
    next_attempt: str | None = None  # when the agent tries again (failed, or due for renewal)


class SiteHost(View):
    tenant: str
    name: str
    domains: list[str]
    kind: SiteKind
    document_root: str
    process: str | None
    autoindex: bool
    hsts: bool
    certificate: CertificateState
    serving: bool  # false while the tenant is suspended (its sites answer 503)
    revoked: bool | None = None  # site.delete: whether the CA took the revocation


class TenantSiteList(View):
    tenant: str
    sites: list[SiteHost]


class UploadOutcome(View):
    tenant: str
    site: str
    files: int
    directories: int
    bytes: int
    stripped_exec: int  # files whose execute bits were taken off
    scanned: bool


class FileState(View):
    file: str
    append_only: bool


# `infected`: an upload the malware scanner refused (the panel audits and alerts it).
ErrorCode = Literal["invalid", "conflict", "not_found", "failed", "unsupported", "infected"]


class AgentError(View):
    code: ErrorCode
    message: str


Result = (
    TenantHost
    | FirewallState
    | FileState
    | JobOutcome
    | ProcessState
    | TenantProcesses
    | DatabaseHost
    | TenantDatabaseList
    | SiteHost
    | TenantSiteList
    | UploadOutcome
)


class AgentReply(View):
    version: Literal[1] = PROTOCOL_VERSION
    request_id: str
    result: Result | None = None
    error: AgentError | None = None


class ProtocolError(Exception):
    """A frame that is not a valid message: the connection is closed without an answer."""


def send(sock: socket.socket, message: View) -> None:
    body = message.model_dump_json().encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes; the limit is {MAX_FRAME}")
    sock.sendall(_LENGTH.pack(len(body)) + body)


def receive_bytes(sock: socket.socket) -> bytes:
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes; the limit is {MAX_FRAME}")
    return _exactly(sock, length)


def parse_request(body: bytes) -> AgentRequest:
    try:
        return AgentRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ProtocolError(_first_error(exc)) from None


def parse_reply(body: bytes) -> AgentReply:
    try:
        return AgentReply.model_validate_json(body)
    except ValidationError as exc:
        raise ProtocolError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return json.dumps(f"{where}: {first['msg']}")[1:-1][:300]


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            raise ProtocolError("connection closed mid-frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
