"""Tenants' long-running processes (a PHP-FPM pool, a Node app), kept running by the agent.

Each declared process has a thread of its own in the agent that starts it in the tenant's jail
(jail.py: the whole stack, as the tenant, in its cgroups), copies its output to the tenant's
`logs/<name>.log` (logfile.py: rotated, written safely into a directory the tenant controls) and,
when it exits without being asked to, starts it again after a delay that doubles with each quick
exit (`tenants.processes`: restart_delay, restart_max_delay, stable_after, max_quick_exits; then
`failed` until started again). Stopping asks the command with SIGTERM, then ends the jail.

Declarations are kept in the agent's state directory: an agent that restarts starts again what
was running, and a tenant resumed after a suspension gets its processes back.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from wcp360.config.server import ProcessesConfig
from wcp360.system import beneath
from wcp360.system.cgroups import TenantCgroups
from wcp360.system.jail import Jail, JailUnavailable, spawn
from wcp360.system.logfile import LogFile
from wcp360.system.protocol import ErrorCode, ProcessSpec, ProcessState, ProcessStatus, TenantHost
from wcp360.system.statefile import read_json, write_json
from wcp360.system.syscalls import RuntimeClass

PHP_CONFIG = "/run/wcp360/php-fpm.conf"
STOP_GRACE = 5.0  # seconds between SIGTERM to the command and the end of its jail
JailFactory = Callable[[TenantHost, RuntimeClass, bool, dict[str, bytes]], Jail]


class SupervisorRefusal(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def php_fpm_binary() -> str | None:
    """Debian installs php-fpm as /usr/sbin/php-fpmX.Y; the newest one there."""
    found = sorted(glob.glob("/usr/sbin/php-fpm*"), reverse=True)
    return found[0] if found else None


def php_pool(host: TenantHost, name: str, socket: str, max_children: int) -> bytes:
    """The tenant's pool: one master and its workers, all as the tenant (already, in the jail:
    the `user` directive is ignored without root), confined by open_basedir to its home and /tmp."""
    home = host.home
    return (
        "[global]\n"
        "error_log = /dev/null\n"  # the master's own messages go to stderr (--force-stderr), so to the log
        "daemonize = no\n"
        f"[{name}]\n"
        f"listen = {socket}\n"
        # Who may connect is decided by run/ (0710, nginx's group: only the tenant and nginx pass);
        # php-fpm in the jail cannot give the socket nginx's group itself.
        "listen.mode = 0666\n"
        "pm = ondemand\n"
        f"pm.max_children = {max_children}\n"
        "pm.process_idle_timeout = 60s\n"
        "clear_env = yes\n"
        "catch_workers_output = yes\n"
        "decorate_workers_output = no\n"
        "security.limit_extensions = .php\n"
        f"php_admin_value[open_basedir] = {home}:/tmp\n"
        f"php_admin_value[session.save_path] = {home}/tmp\n"  # noqa: S108 - the tenant's own tmp/
        f"php_admin_value[upload_tmp_dir] = {home}/tmp\n"  # noqa: S108 - the tenant's own tmp/
        f"php_admin_value[sys_temp_dir] = {home}/tmp\n"  # noqa: S108 - the tenant's own tmp/
        "php_admin_flag[log_errors] = on\n"
        "php_admin_flag[display_errors] = off\n"
    ).encode()


class Supervised:
    """One declared process and the thread that keeps it running."""

    def __init__(self, owner: Supervisor, host: TenantHost, spec: ProcessSpec) -> None:
        self.owner, self.host, self.spec = owner, host, spec
        self.socket = f"{host.home}/run/{spec.name}.sock"
        self.status: ProcessStatus = "stopped"
        self.wanted = False
        self.restarts = 0
        self.last_exit: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def view(self) -> ProcessState:
        process = self.process
        return ProcessState(
            name=self.spec.name,
            runtime=self.spec.runtime,
            argv=self.spec.argv,
            network=self.spec.network,
            status=self.status,
            pid=process.pid if process is not None and process.returncode is None else None,
            restarts=self.restarts,
            last_exit=self.last_exit,
            socket=self.socket,
            log=f"{self.host.home}/logs/{self.spec.name}.log",
        )

    def start(self) -> None:
        with self._lock:
            self.wanted = True
            self.restarts = 0
            if self._thread is None or not self._thread.is_alive():
                self.status = "starting"
                self._thread = threading.Thread(
                    target=self._keep_running, name=f"jail-{self.host.name}-{self.spec.name}", daemon=True
                )
                self._thread.start()
            else:
                self._wake.set()  # in backoff: start now

    def stop(self, wait: bool = True) -> None:
        with self._lock:
            self.wanted = False
            self._wake.set()
            process, thread = self.process, self._thread
        if process is not None and process.returncode is None:
            _terminate(process)
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- the process's own thread ----------------------------------------------------------------

    def _keep_running(self) -> None:
        config = self.owner.config
        log = LogFile(
            self.owner.home_root,
            self.host.name,
            self.spec.name,
            self.host.uid,
            self.host.gid,
            config.log_max_size,
            config.log_keep,
        )
        quick_exits = 0
        try:
            while self.wanted:
                began = time.monotonic()
                code = self._run_once(log)
                self.last_exit = code
                if not self.wanted:
                    break
                quick = time.monotonic() - began < config.stable_after.total_seconds()
                quick_exits = quick_exits + 1 if quick else 1
                if quick_exits >= config.max_quick_exits:
                    self._note(log, f"exited {quick_exits} times in a row within {config.stable_after}; left failed")
                    with self._lock:
                        self.wanted = False
                        self.status = "failed"
                    return
                delay = min(
                    config.restart_delay.total_seconds() * 2 ** (quick_exits - 1),
                    config.restart_max_delay.total_seconds(),
                )
                self.status = "backoff"
                self._note(log, f"exited with status {code}; starting again in {delay:g} s")
                self._wake.clear()
                self._wake.wait(delay)
                self.restarts += 1
            self.status = "stopped"
        finally:
            log.close()

    def _run_once(self, log: LogFile) -> int:
        try:
            command, files = self.owner.command_for(self.host, self.spec, self.socket)
            jail = self.owner.jail_for(self.host, self.spec.runtime, self.spec.network, files)
            environment = {"SOCKET": self.socket}
            process = spawn(jail, command, self.owner.cgroups, subprocess.PIPE, subprocess.STDOUT, environment)
        except (JailUnavailable, SupervisorRefusal, OSError) as exc:  # said in its log, then backoff
            self._note(log, f"could not start: {exc}")
            return 127
        with self._lock:
            self.process = process
            self.status = "running"
            if not self.wanted:  # stopped while starting
                _terminate(process)
        self._note(log, f"started: pid {process.pid}")
        assert process.stdout is not None
        with process.stdout:
            for chunk in iter(lambda: os.read(process.stdout.fileno(), 65536), b""):  # type: ignore[union-attr]
                log.write(chunk)
        return process.wait()

    def _note(self, log: LogFile, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.write(f"{stamp} wcp360: {self.spec.name} {message}\n".encode())


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command (the jail's init's child), then, after STOP_GRACE, the jail itself:
    bubblewrap's death takes its PID namespace with it."""
    for pid in _descendants(process.pid, depth=2):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _descendants(pid: int, depth: int) -> list[int]:
    level = [pid]
    for _ in range(depth):
        children: list[int] = []
        for parent in level:
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{parent}/task"):
                    with contextlib.suppress(OSError):
                        children += [int(c) for c in Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
        level = children
    return level


class Supervisor:
    def __init__(
        self,
        config: ProcessesConfig,
        home_root: Path,
        state_dir: Path,
        cgroups: TenantCgroups | None,
        jail_for: JailFactory,
        web_gid: int | None = None,
    ) -> None:
        self.config, self.home_root, self.cgroups, self.jail_for = config, home_root, cgroups, jail_for
        self.web_gid = web_gid
        self.state_dir = state_dir / "processes"
        self._processes: dict[str, dict[str, Supervised]] = {}
        self._lock = threading.Lock()

    # -- verbs -------------------------------------------------------------------------------------

    def start(self, host: TenantHost, spec: ProcessSpec) -> ProcessState:
        with self._lock:
            declared = self._processes.setdefault(host.name, {})
            existing = declared.get(spec.name)
            if existing is None and len(declared) >= self.config.max_per_tenant:
                limit = self.config.max_per_tenant
                raise SupervisorRefusal(
                    "conflict", f"{host.name} has {limit} processes, the limit (tenants.processes.max_per_tenant)"
                )
        if spec.runtime == "php" and php_fpm_binary() is None:
            raise SupervisorRefusal("unsupported", "php-fpm is not installed (Debian package php-fpm)")
        if existing is not None:
            existing.stop()
        self._make_run_directory(host)
        supervised = Supervised(self, host, spec)
        with self._lock:
            self._processes[host.name][spec.name] = supervised
        supervised.start()
        self._save(host.name)
        return supervised.view()

    def control(self, host: TenantHost, name: str, action: str) -> ProcessState:
        supervised = self._processes.get(host.name, {}).get(name)
        if supervised is None:
            raise SupervisorRefusal("not_found", f"{host.name} has no process {name}")
        if action in {"stop", "restart", "remove"}:
            supervised.stop()
        if action in {"start", "restart"}:
            supervised.start()
        if action == "remove":
            with self._lock:
                del self._processes[host.name][name]
        self._save(host.name)
        return supervised.view()

    def states(self, tenant: str) -> list[ProcessState]:
        return [p.view() for p in sorted(self._processes.get(tenant, {}).values(), key=lambda p: p.spec.name)]

    # -- the tenant's life -------------------------------------------------------------------------

    def halt(self, tenant: str) -> None:
        """Stop every process of the tenant (a suspension, a delete): they stay declared as wanted."""
        for supervised in list(self._processes.get(tenant, {}).values()):
            supervised.stop()

    def revive(self, host: TenantHost) -> None:
        """Start again what the tenant had running (a resume, the agent's own start)."""
        for name, entry in self._load(host.name).items():
            spec = ProcessSpec.model_validate(entry["spec"])
            supervised = self._processes.setdefault(host.name, {}).get(name) or Supervised(self, host, spec)
            supervised.host = host
            self._processes[host.name][name] = supervised
            if entry["wanted"]:
                supervised.start()

    def forget(self, tenant: str) -> None:
        self.halt(tenant)
        with self._lock:
            self._processes.pop(tenant, None)
        (self.state_dir / f"{tenant}.json").unlink(missing_ok=True)

    def shutdown(self) -> None:
        """The agent stopping: everything stops, and the declarations say what to start next time."""
        for tenant in list(self._processes):
            self.halt(tenant)

    # -- what runs -------------------------------------------------------------------------------

    def command_for(self, host: TenantHost, spec: ProcessSpec, socket: str) -> tuple[list[str], dict[str, bytes]]:
        if spec.runtime != "php":
            return list(spec.argv or []), {}
        binary = php_fpm_binary()
        if binary is None:
            raise SupervisorRefusal("unsupported", "php-fpm is not installed (Debian package php-fpm)")
        pool = php_pool(host, spec.name, socket, self.config.php_max_children)
        return [binary, "--nodaemonize", "--force-stderr", "--fpm-config", PHP_CONFIG], {PHP_CONFIG: pool}

    def _make_run_directory(self, host: TenantHost) -> None:
        """The tenant's `run/` for its sockets: nginx passes (0710, its group) to the socket it
        is given; nobody else can, whatever mode a socket in it has."""
        group, mode = (self.web_gid, 0o710) if self.web_gid is not None else (host.gid, 0o750)
        with beneath.opened_root(self.home_root) as root:
            home = os.open(host.name, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            try:
                if not beneath.is_directory(home, "run"):
                    beneath.remove_tree(home, "run")  # whatever the tenant put under the name
                os.close(beneath.make_directory(home, "run", host.uid, group, mode, existing_ok=True))
            finally:
                os.close(home)

    # -- declarations on disk ----------------------------------------------------------------------

    def _save(self, tenant: str) -> None:
        document = {
            name: {"spec": p.spec.model_dump(mode="json"), "wanted": p.wanted}
            for name, p in self._processes.get(tenant, {}).items()
        }
        write_json(self.state_dir / f"{tenant}.json", document)

    def _load(self, tenant: str) -> dict[str, dict[str, object]]:
        loaded: dict[str, dict[str, object]] = read_json(self.state_dir / f"{tenant}.json", {})
        return loaded
