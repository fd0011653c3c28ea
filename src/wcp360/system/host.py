"""What each verb does to the host: the agent's privileged work, and nothing else does it.

A verb either completes or undoes what it did (tenant.create removes the user, group and home it
made when a later step fails), and answers a typed result or an `AgentFailure`. Without root (the
in-process agent of development mode) tenants get a home owned by the server's own user and no
system account; every reply says so in `degraded`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from wcp360.audit.append_only import set_append_only_fd
from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.config.tls import TlsConfig
from wcp360.defense.firewall import NftFirewall
from wcp360.kernel import landlock_abi
from wcp360.system import accounts, beneath, clamd, uploads
from wcp360.system.cgroups import TenantCgroups, read_layout
from wcp360.system.databases import DatabaseFailed, DatabaseRefused
from wcp360.system.jail import Jail, JailUnavailable, run_job
from wcp360.system.jail_exec import HelperUnavailable, ensure_helper
from wcp360.system.names import NameRefused, check_name, system_user_exists
from wcp360.system.nginx import ApplyFailed, NginxUnavailable
from wcp360.system.protocol import (
    AuditAppendOnly,
    Call,
    DatabaseCreate,
    DatabaseDrop,
    DatabaseHost,
    DatabaseList,
    DatabaseRotate,
    ErrorCode,
    FileState,
    FirewallState,
    FirewallSync,
    JobOutcome,
    ProcessControl,
    ProcessList,
    ProcessStart,
    ProcessState,
    Result,
    SiteCertify,
    SiteCreate,
    SiteDelete,
    SiteHost,
    SiteList,
    SiteUpload,
    TenantCreate,
    TenantDatabaseList,
    TenantDelete,
    TenantHost,
    TenantProcesses,
    TenantResume,
    TenantRun,
    TenantSetLimits,
    TenantSiteList,
    TenantSuspend,
    TenantUsage,
    UploadOutcome,
)
from wcp360.system.sites import SiteRefused, Websites, web_group
from wcp360.system.statefile import read_json, write_json
from wcp360.system.supervise import Supervisor, SupervisorRefusal
from wcp360.system.syscalls import RuntimeClass
from wcp360.system.tenant_databases import TenantDatabases

# Seed 001 §6: "750 or stricter". With websites, the home's group is nginx's and only lets it
# pass (0710) to public/ (02750: readable by the group, kept for new files by setgid) and run/
# (its sockets); logs/ and tmp/ stay the tenant's own group's or its alone.
HOME_MODE = 0o750
WEB_HOME_MODE = 0o710
SUBDIRECTORIES = {"public": 0o750, "logs": 0o750, "tmp": 0o700}
WEB_SUBDIRECTORIES = {"public": 0o2750, "logs": 0o750, "tmp": 0o700}
UNPRIVILEGED = "not root: no system user or group; the home belongs to the server's own user"


class AgentFailure(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class HostAgent:
    def __init__(
        self,
        tenants: TenantsConfig,
        firewall: FirewallConfig,
        state_dir: Path,
        audit_dir: Path | None = None,
        tls: TlsConfig | None = None,
        panel_upstream: str | None = None,
        upload_spool: Path | None = None,
    ) -> None:
        self.tenants = tenants
        self.firewall_config = firewall
        self.state_dir = state_dir
        self.audit_dir = audit_dir
        self.privileged = os.geteuid() == 0
        # Only root writes cgroupfs; the in-process agent of development mode says so instead.
        self.cgroups = TenantCgroups(read_layout()) if self.privileged else None
        self._firewall: NftFirewall | None = None
        self.databases = TenantDatabases(tenants.databases, state_dir)
        # nginx's group for the homes (None: websites off, or no such user on this host).
        self.web_gid = web_group(tenants.websites) if tenants.websites.enabled and self.privileged else None
        self.supervisor = Supervisor(
            tenants.processes, tenants.home_root, state_dir, self.cgroups, self._jail_for, self.web_gid
        )
        self.websites = Websites(tenants.websites, tls or TlsConfig(), state_dir, self._all_tenants, panel_upstream)
        # Where the panel leaves uploads for site.upload (its data directory's uploads/).
        self.upload_spool = upload_spool

    def revive_all(self) -> None:
        """The agent starting: every active tenant's processes that were running run again."""
        if not self.privileged:
            return
        for host in self._active_tenants():
            self.supervisor.revive(host)

    def close(self) -> None:
        self.supervisor.shutdown()

    def enforce_database_sizes(self) -> list[tuple[str, str, str, bool]]:
        """Every active tenant's databases against tenants.databases.max_size (hourly);
        (tenant, engine, database, over) of each change."""
        return [
            (host.name, *change)
            for host in self._active_tenants()
            for change in self.databases.enforce_sizes(host.name)
        ]

    def rotate_due_databases(self, now: datetime | None = None) -> list[tuple[str, DatabaseHost]]:
        """Every active tenant's database passwords older than tenants.databases.password_max_age,
        rotated (the agent runs this hourly); (tenant, database) of each, passwords included."""
        return [(host.name, made) for host in self._active_tenants() for made in self.databases.rotate_due(host, now)]

    def run(self, call: Call) -> Result:
        handlers: dict[type, Callable[..., Result]] = {
            AuditAppendOnly: self.audit_append_only,
            TenantCreate: self.create,
            TenantSuspend: self.suspend,
            TenantResume: self.resume,
            TenantDelete: self.delete,
            TenantSetLimits: self.set_limits,
            TenantRun: self.run_in_jail,
            ProcessStart: self.process_start,
            ProcessControl: self.process_control,
            ProcessList: self.process_list,
            DatabaseCreate: self.database_create,
            DatabaseRotate: self.database_rotate,
            DatabaseDrop: self.database_drop,
            DatabaseList: self.database_list,
            SiteCreate: self.site_create,
            SiteDelete: self.site_delete,
            SiteCertify: self.site_certify,
            SiteList: self.site_list,
            SiteUpload: self.site_upload,
            FirewallSync: self.firewall_sync,
        }
        try:
            return handlers[type(call)](call)
        except NameRefused as exc:
            raise AgentFailure("invalid", str(exc)) from None
        except beneath.Escape as exc:
            raise AgentFailure("invalid", str(exc)) from None
        except SupervisorRefusal as exc:
            raise AgentFailure(exc.code, str(exc)) from None
        except DatabaseRefused as exc:
            raise AgentFailure(exc.code, str(exc)) from None
        except DatabaseFailed as exc:
            raise AgentFailure("failed", str(exc)) from None
        except SiteRefused as exc:
            raise AgentFailure(exc.code, str(exc)) from None  # type: ignore[arg-type]
        except ApplyFailed as exc:
            where = f" (site {exc.site}, line {exc.line})" if exc.site else ""
            raise AgentFailure("failed", f"nginx refused the configuration{where}: {exc}") from None
        except NginxUnavailable as exc:
            raise AgentFailure("unsupported", str(exc)) from None
        except uploads.MalwareFound as exc:
            raise AgentFailure("infected", str(exc)) from None
        except uploads.UploadRefused as exc:
            raise AgentFailure("invalid", str(exc)) from None
        except clamd.ScannerDown as exc:
            raise AgentFailure("unsupported", f"{exc}; uploads are refused while scanning is on") from None
        except LookupError as exc:
            raise AgentFailure("not_found", str(exc).strip("'\"")) from None
        except accounts.HostCommandFailed as exc:
            raise AgentFailure("failed", str(exc)) from None
        except OSError as exc:  # the host refused a step (permissions, a full disk): said, not a crash
            raise AgentFailure("failed", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None

    # -- tenants ------------------------------------------------------------------------------

    def create(self, call: TenantCreate) -> TenantHost:
        name = check_name(call.tenant, self.tenants.reserved_names)
        if self._state(name) is not None:
            raise AgentFailure("conflict", f"tenant {name} exists")
        if self.privileged and system_user_exists(name):
            raise AgentFailure("conflict", f"{name!r} is already a user or group on this host")
        home = self.tenants.home_root / name
        undo: list[Callable[[], None]] = []
        try:
            if self.privileged:
                uid = gid = accounts.free_id(self.tenants.uid_min, self.tenants.uid_max)
                accounts.add_user(name, uid, home)
                undo.append(lambda: accounts.remove_user(name))
            else:
                uid, gid = os.geteuid(), os.getegid()
            with beneath.opened_root(self.tenants.home_root, create_mode=0o755) as root:
                if beneath.exists(root, name):
                    raise AgentFailure("conflict", f"{home} exists already; it is left as it is")
                web = self.web_gid
                home_fd = beneath.make_directory(root, name, uid, web or gid, WEB_HOME_MODE if web else HOME_MODE)
                undo.append(lambda: self._remove_home(name))
                try:
                    for sub, mode in (WEB_SUBDIRECTORIES if web else SUBDIRECTORIES).items():
                        group = web if web is not None and sub == "public" else gid
                        os.close(beneath.make_directory(home_fd, sub, uid, group, mode))
                finally:
                    os.close(home_fd)
            degraded = self._degraded()
            if self.cgroups is not None:
                undo.append(lambda: self.cgroups.remove(name) if self.cgroups else None)
                degraded += self.cgroups.create(name, call.limits)
            host = TenantHost(name=name, uid=uid, gid=gid, home=str(home), state="active", degraded=degraded)
            self._save(host, call.limits)
        except BaseException:
            for step in reversed(undo):
                step()
            raise
        return host

    def suspend(self, call: TenantSuspend) -> TenantHost:
        host, limits = self._existing(call.tenant)
        if self.privileged:
            accounts.expire(host.name)  # first: nothing new can sign in while the rest is stopped
            self._stop_everything(host)
        # Its database users are locked (and their sessions ended) with it.
        locked = self.databases.lock_all(host.name, True)
        suspended = host.model_copy(update={"state": "suspended", "degraded": [*host.degraded, *locked]})
        self._save(suspended, limits)
        self._serve_sites_of(host.name)  # they answer 503 now
        return suspended

    def resume(self, call: TenantResume) -> TenantHost:
        host, limits = self._existing(call.tenant)
        if self.privileged:
            accounts.unexpire(host.name)
        unlocked = self.databases.lock_all(host.name, False)
        kept = [line for line in host.degraded if not line.startswith(("mariadb ", "postgresql "))]
        active = host.model_copy(update={"state": "active", "degraded": [*kept, *unlocked]})
        self._save(active, limits)
        self._serve_sites_of(host.name)
        if self.privileged:
            self.supervisor.revive(active)
        return active

    def set_limits(self, call: TenantSetLimits) -> TenantHost:
        host, _ = self._existing(call.tenant)
        if self.cgroups is not None:
            host = host.model_copy(update={"degraded": self.cgroups.apply(host.name, call.limits)})
        self._save(host, call.limits)
        return host

    def delete(self, call: TenantDelete) -> TenantHost:
        """Stop everything the tenant runs, archive its home, then remove the home, user and group.
        The tenant's processes are gone before the archive is read, so nothing can swap a
        directory for a symlink under it; tarfile stores links as links and never follows them."""
        host, _ = self._existing(call.tenant)
        if self.privileged:
            accounts.expire(host.name)
            self._stop_everything(host)
        self.supervisor.forget(host.name)
        self.databases.drop_all(host.name)
        left = self.websites.delete_all(host) if self.websites.listing(host) else []
        archive = self._archive(host.name)
        self._remove_home(host.name)
        if self.privileged:
            accounts.remove_user(host.name)
        if self.cgroups is not None:
            self.cgroups.remove(host.name)
        (self._tenant_dir() / f"{host.name}.json").unlink(missing_ok=True)
        self.prune_archives()
        archived = str(archive) if archive else None
        return host.model_copy(update={"state": "deleted", "archive": archived, "degraded": [*host.degraded, *left]})

    def run_in_jail(self, call: TenantRun) -> JobOutcome:
        """A job: the command in the tenant's jail, as the tenant, in its cgroups, to its end."""
        host, _ = self._existing(call.tenant)
        if host.state != "active":
            raise AgentFailure("conflict", f"tenant {host.name} is {host.state}")
        jail = self.jail(host, call.runtime, network=call.network)
        try:
            result = run_job(jail, list(call.argv), self.cgroups, call.timeout)
        except JailUnavailable as exc:
            raise AgentFailure("unsupported", str(exc)) from None
        return JobOutcome(**dataclasses.asdict(result))

    def process_start(self, call: ProcessStart) -> ProcessState:
        return self.supervisor.start(self._active(call.tenant), call.process)

    def process_control(self, call: ProcessControl) -> ProcessState:
        host = self._active(call.tenant) if call.action in {"start", "restart"} else self._existing(call.tenant)[0]
        return self.supervisor.control(host, call.name, call.action)

    def process_list(self, call: ProcessList) -> TenantProcesses:
        host, _ = self._existing(call.tenant)
        usage = TenantUsage(cpu_seconds=None, memory_bytes=None, pids=None)
        if self.cgroups is not None:
            counters = self.cgroups.usage(host.name)
            usage = TenantUsage(**dataclasses.asdict(counters), pressure=self.cgroups.pressure(host.name))
        return TenantProcesses(tenant=host.name, processes=self.supervisor.states(host.name), usage=usage)

    def database_create(self, call: DatabaseCreate) -> DatabaseHost:
        return self.databases.create(self._active(call.tenant), call.engine, call.name)

    def database_rotate(self, call: DatabaseRotate) -> DatabaseHost:
        return self.databases.rotate(self._active(call.tenant), call.engine, call.name)

    def database_drop(self, call: DatabaseDrop) -> DatabaseHost:
        host, _ = self._existing(call.tenant)
        return self.databases.drop(host.name, call.engine, call.name)

    def database_list(self, call: DatabaseList) -> TenantDatabaseList:
        host, _ = self._existing(call.tenant)
        listing = self.databases.listing(host.name, locked=host.state != "active")
        return TenantDatabaseList(tenant=host.name, databases=listing)

    def site_create(self, call: SiteCreate) -> SiteHost:
        return self.websites.create(self._web_tenant(call.tenant), call.site)

    def site_delete(self, call: SiteDelete) -> SiteHost:
        self._websites_here()
        return self.websites.delete(self._existing(call.tenant)[0], call.name)

    def site_certify(self, call: SiteCertify) -> SiteHost:
        return self.websites.certify(self._web_tenant(call.tenant), call.name)

    def site_list(self, call: SiteList) -> TenantSiteList:
        host, _ = self._existing(call.tenant)
        return TenantSiteList(tenant=host.name, sites=self.websites.listing(host))

    def site_upload(self, call: SiteUpload) -> UploadOutcome:
        host = self._web_tenant(call.tenant)
        site = self.websites.find(host, call.name)
        settings = self.tenants.websites.uploads
        with self._staged(call.staged) as staged:
            size = os.fstat(staged.fileno()).st_size
            if size > settings.max_size:
                raise AgentFailure(
                    "invalid", f"{size} bytes; the limit is {settings.max_size} (tenants.websites.uploads.max_size)"
                )
            found = list(uploads.entries(staged, call.format, call.path, settings))
            scanned = uploads.check(found, settings)  # all of it, before anything is written
            self.websites.make_document_root(host, site.name)
            written = uploads.write(
                found,
                Path(site.document_root),
                host.uid,
                self.web_gid if self.web_gid is not None else host.gid,
                keep_exec=site.kind == "proxy",  # the tenant's app may run its own files; nginx never does
                settings=settings,
            )
        return UploadOutcome(tenant=host.name, site=site.name, scanned=scanned, **dataclasses.asdict(written))

    @contextlib.contextmanager
    def _staged(self, name: str) -> Iterator[IO[bytes]]:
        """The panel's upload, taken from its spool: a regular file with one link, opened without
        following a link, and removed from the spool at once (the agent reads its own descriptor)."""
        if self.upload_spool is None:
            raise AgentFailure("unsupported", "this agent has no upload spool")
        try:
            with beneath.opened_root(self.upload_spool) as spool:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=spool)
                os.unlink(name, dir_fd=spool)
        except FileNotFoundError:
            raise AgentFailure("not_found", f"no upload {name} in the spool") from None
        with os.fdopen(fd, "rb") as staged:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 0:
                raise AgentFailure("invalid", f"upload {name} is not a file of the panel's own")
            yield staged

    def _web_tenant(self, name: str) -> TenantHost:
        self._websites_here()
        return self._active(name)

    def _websites_here(self) -> None:
        if not self.tenants.websites.enabled:
            raise AgentFailure("unsupported", "websites are off (tenants.websites.enabled)")
        if not self.privileged:
            raise AgentFailure("unsupported", "websites are served by the agent as root; this agent is not root")

    def _serve_sites_of(self, tenant: str) -> None:
        """A tenant's state changed: its sites' configuration follows (503 while suspended)."""
        host, _ = self._existing(tenant)
        if self.privileged and self.websites.listing(host):
            self.websites.apply()

    def _active(self, name: str) -> TenantHost:
        host, _ = self._existing(name)
        if host.state != "active":
            raise AgentFailure("conflict", f"tenant {host.name} is {host.state}")
        return host

    def _jail_for(self, host: TenantHost, runtime: RuntimeClass, network: bool, files: dict[str, bytes]) -> Jail:
        return self.jail(host, runtime, network, files)

    def jail(
        self, host: TenantHost, runtime: RuntimeClass, network: bool = False, files: dict[str, bytes] | None = None
    ) -> Jail:
        """The tenant's jail for one runtime class (the helper built on first use)."""
        if not self.privileged:
            raise AgentFailure("unsupported", "jails are started by the agent as root; this agent is not root")
        try:
            helper = ensure_helper(self.state_dir / "bin")
        except HelperUnavailable as exc:
            raise AgentFailure("unsupported", str(exc)) from None
        return Jail(
            host.name,
            host.uid,
            host.gid,
            Path(host.home),
            helper,
            runtime=runtime,
            network=network,
            files=files or {},
            # Without Landlock in the kernel the other layers still hold; doctor says what is missing.
            landlock_optional=landlock_abi() == 0,
            tcp_ports=None if self.tenants.network.allow_all_tcp_ports else tuple(self.tenants.network.allow_tcp_ports),
            socket_dirs=self.databases.socket_dirs(),
        )

    def _stop_everything(self, host: TenantHost) -> None:
        """Its supervised processes (first: they would be started again), whatever runs in the
        tenant's cgroups (whatever uid it changed to) and whatever runs as its uid (whatever
        group it escaped to)."""
        self.supervisor.halt(host.name)
        if self.cgroups is not None:
            self.cgroups.kill(host.name)
        accounts.kill_all(host.uid)

    def prune_archives(self, now: float | None = None) -> int:
        """Remove archives older than `tenants.archive_retention`; how many went."""
        directory = self.tenants.archive_dir
        if not directory.is_dir():
            return 0
        cutoff = (now or time.time()) - self.tenants.archive_retention.total_seconds()
        removed = 0
        for entry in os.scandir(directory):
            archive = entry.name.endswith(".tar.gz") and entry.is_file(follow_symlinks=False)
            if archive and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        return removed

    def _archive(self, name: str) -> Path | None:
        with beneath.opened_root(self.tenants.home_root) as root:
            if not beneath.is_directory(root, name):
                return None
        self.tenants.archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.tenants.archive_dir, 0o700)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.tenants.archive_dir / f"{name}-{stamp}.tar.gz"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w:gz") as tar:
            tar.add(self.tenants.home_root / name, arcname=name)  # lstat-based: links stay links
        return target

    def _remove_home(self, name: str) -> None:
        with beneath.opened_root(self.tenants.home_root) as root:
            beneath.remove_tree(root, name)

    # -- firewall -----------------------------------------------------------------------------

    def firewall_sync(self, call: FirewallSync) -> FirewallState:
        if self._firewall is None:
            self._firewall = NftFirewall(self.firewall_config)
        status = self._firewall.replace([(ban.network, ban.expires_in) for ban in call.bans])
        return FirewallState(active=status.active, bans=len(call.bans) if status.active else 0, reason=status.reason)

    # -- the audit log's append-only attribute -------------------------------------------------

    def audit_append_only(self, call: AuditAppendOnly) -> FileState:
        """Only a regular file directly in the configured audit directory, opened without following
        a link; the name pattern admits the log and its rotated files and nothing else."""
        if self.audit_dir is None:
            raise AgentFailure("unsupported", "this agent has no audit directory configured")
        with beneath.opened_root(self.audit_dir) as directory:
            try:
                fd = os.open(call.file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            except FileNotFoundError:
                raise AgentFailure("not_found", f"no {call.file} in the audit directory") from None
            except OSError as exc:
                raise AgentFailure("invalid", f"{call.file}: {exc.strerror}") from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise AgentFailure("invalid", f"{call.file} is not a regular file")
                granted = set_append_only_fd(fd, call.on)
            finally:
                os.close(fd)
        if not granted:
            raise AgentFailure("failed", f"{call.file}: the filesystem or the agent's privileges refuse chattr")
        return FileState(file=call.file, append_only=call.on)

    # -- the agent's own record of tenants -------------------------------------------------------

    def _degraded(self) -> list[str]:
        return [] if self.privileged else [UNPRIVILEGED]

    def _tenant_dir(self) -> Path:
        directory = self.state_dir / "tenants"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory

    def _state(self, name: str) -> tuple[TenantHost, TenantLimits] | None:
        stored = read_json(self._tenant_dir() / f"{name}.json", None)
        if stored is None:
            return None
        return TenantHost.model_validate(stored["host"]), TenantLimits.model_validate(stored["limits"])

    def _all_tenants(self) -> list[TenantHost]:
        found = [self._state(path.stem) for path in sorted(self._tenant_dir().glob("*.json"))]
        return [state[0] for state in found if state is not None]

    def _active_tenants(self) -> list[TenantHost]:
        """Every active tenant the agent keeps (the agent's start, its hourly upkeep)."""
        return [host for host in self._all_tenants() if host.state == "active"]

    def _existing(self, name: str) -> tuple[TenantHost, TenantLimits]:
        check_name(name, ())
        found = self._state(name)
        if found is None:
            raise AgentFailure("not_found", f"no tenant {name} on this host")
        return found

    def _save(self, host: TenantHost, limits: TenantLimits) -> None:
        document = {"host": host.model_dump(), "limits": limits.model_dump(mode="json")}
        write_json(self._tenant_dir() / f"{host.name}.json", document)
