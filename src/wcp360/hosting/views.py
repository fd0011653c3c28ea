"""Typed views of the hosting package."""

from __future__ import annotations

from wcp360.views import View


class LimitsView(View):
    disk: int
    processes: int
    memory: int
    cpu_percent: int
    io_weight: int


class TenantView(View):
    id: str
    name: str
    owner_id: str
    status: str
    uid: int
    gid: int
    home: str
    limits: LimitsView
    # What the host could not do for this tenant (development mode without root), else empty.
    degraded: list[str]
    created_at: str
    suspended_at: str | None


class ProcessView(View):
    """A tenant's supervised process as the agent keeps it."""

    name: str
    runtime: str
    argv: list[str] | None
    network: bool
    status: str  # running, backoff, stopped, failed
    pid: int | None
    restarts: int
    last_exit: int | None
    socket: str
    log: str


class UsageView(View):
    """The tenant's cgroup counters; None where this host keeps none."""

    cpu_seconds: float | None
    memory_bytes: int | None
    pids: int | None
    pressure: dict[str, str]


class TenantProcessesView(View):
    tenant: str
    processes: list[ProcessView]
    usage: UsageView


class DatabaseView(View):
    """A tenant's database: `database` on the `engine` server, reached by `user` at `socket`."""

    engine: str
    name: str  # the tenant's part of the name
    database: str
    user: str
    socket: str
    locked: bool
    size_bytes: int | None
    over_size: bool  # over tenants.databases.max_size: writes refused until back under


class DatabaseCredentialsView(DatabaseView):
    """The answer to create and rotate: the only time the password is shown (nothing keeps it)."""

    password: str


class CertificateView(View):
    status: str  # pending, valid, failed, self_signed
    not_after: str | None
    issuer: str | None
    error: str | None  # the last failure while the agent retries
    failures: int
    next_attempt: str | None


class SiteView(View):
    """A website: its names, what serves it, its document root and its certificate."""

    name: str
    domains: list[str]
    kind: str  # static, php, proxy
    document_root: str
    process: str | None
    autoindex: bool
    hsts: bool
    certificate: CertificateView
    serving: bool  # false while the tenant is suspended (503)
    revoked: bool | None = None  # after delete: whether the CA took the revocation


class UploadView(View):
    site: str
    files: int
    directories: int
    bytes: int
    stripped_exec: int  # files whose execute bits were taken off
    scanned: bool  # by clamd (tenants.websites.uploads.scan)
