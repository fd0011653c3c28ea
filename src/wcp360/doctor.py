"""`wcp360 doctor`: what this host gives WCP360, checked for real, one line per check.

`fail` means WCP360 cannot do its job as configured (no database, schema behind, a configured Redis
down, the firewall enabled but not applied); `warn` means it runs degraded (a kernel feature
missing, so a protection is weaker than designed); `ok` means as designed. The sandbox check
spawns a worker-like process that confines itself and reports what the kernel granted.

It is also the seed's security self-audit (seed 000 §6): every check has a stable ID
(`WCP-<area>-<n>`, never reused), a severity, a one-line finding and a remedy. Exit status: 0
nothing failed, 1 something failed, and with `--strict` 3 when warnings are all there is.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from wcp360.config import Config

Status = Literal["ok", "warn", "fail"]
CGROUP_CONTROLLERS = ("cpu", "memory", "pids", "io")


Severity = Literal["info", "low", "medium", "high", "critical"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    id: str = "WCP-GEN-000"
    severity: Severity = "info"
    remedy: str = ""


# id: (check name, severity when it is not ok, remedy). Names are what `doctor` prints; IDs are
# what a CI job or a cron alert keys on, so they never change meaning.
CATALOGUE: dict[str, tuple[str, Severity, str]] = {
    "WCP-CFG-001": ("config", "critical", "fix the file named in the error"),
    "WCP-CFG-002": ("config directory", "critical", "chown root: and chmod 0700 the config directory"),
    "WCP-DB-001": ("database", "critical", "start the database, or run `wcp360 db upgrade`"),
    "WCP-DB-002": ("redis (rate limits)", "high", "start Redis, or set rate_limit.yml storage to memory://"),
    "WCP-DB-003": ("redis (ids windows)", "high", "start Redis, or set ids.yml storage to memory://"),
    "WCP-SBX-001": ("landlock", "medium", "a kernel with Landlock (5.13+, lsm=landlock)"),
    "WCP-SBX-002": ("seccomp", "high", "a kernel with seccomp filters; libseccomp installed"),
    "WCP-SBX-003": ("no_new_privs", "high", "a kernel with PR_SET_NO_NEW_PRIVS (3.5+)"),
    "WCP-SBX-004": ("wasmtime", "critical", "reinstall WCP360's dependencies"),
    "WCP-SBX-000": ("sandbox workers", "critical", "see the error; the confined probe could not start"),
    "WCP-KRN-001": ("cgroup v2", "medium", "boot with systemd.unified_cgroup_hierarchy=1 (cgroup_no_v1=all)"),
    "WCP-KRN-003": ("tenant cgroups", "medium", "a cgroup v2 host (or v1 pids, memory, cpu) for tenant limits"),
    "WCP-KRN-002": ("pressure stall info", "low", "boot with psi=1"),
    "WCP-NET-001": ("listening sockets", "medium", "close or bind to loopback every port but 443 (and 80, 22)"),
    "WCP-NET-002": ("firewall", "medium", "wcp360.yml firewall.enabled: true, with the agent running"),
    "WCP-AUD-001": ("audit log", "medium", "run on a filesystem with chattr +a, with CAP_LINUX_IMMUTABLE"),
    "WCP-AGT-001": ("system agent", "high", "run `wcp360 agent` as root (systemctl enable --now wcp360-agent)"),
    "WCP-AGT-002": ("agent socket", "critical", "restart the agent: it makes its socket 0660 root:<group> in 0750"),
    "WCP-USR-001": ("service user", "high", "run `wcp360 install`; never run the panel as root"),
    "WCP-USR-002": (
        "code readable by the service user",
        "critical",
        "install WCP360 and its Python where the service user can read them (/opt/wcp360)",
    ),
    "WCP-JAIL-001": ("tenant jails", "high", "apt install bubblewrap; allow unprivileged user namespaces"),
    "WCP-JAIL-002": ("jail helper", "high", "apt install gcc libc6-dev (the agent builds its helper once)"),
    "WCP-JAIL-003": ("jail landlock", "medium", "a kernel with Landlock ABI 6 (6.12+) and lsm=landlock"),
    "WCP-JAIL-004": ("jail seccomp", "high", "a kernel with seccomp filters; libseccomp installed"),
    "WCP-JAIL-005": ("php-fpm", "low", "apt install php-fpm (for tenants' php processes)"),
    "WCP-TDB-001": (
        "mariadb accounts",
        "high",
        "DROP USER every anonymous account and every account of a non-local host; no global privileges for "
        "tenants; a password (or unix_socket) for every account",
    ),
    "WCP-TDB-002": (
        "postgresql pg_hba",
        "high",
        "no `trust` for non-loopback hosts; set tenants.databases.postgresql.hba_file so tenants need a password",
    ),
    "WCP-WEB-001": ("nginx", "high", "apt install nginx (the agent runs it for tenants' sites)"),
    "WCP-WEB-002": (
        "upload scanning",
        "medium",
        "apt install clamav-daemon, start clamd, set tenants.websites.uploads.scan.enabled: true",
    ),
    "WCP-WEB-003": ("site certificates", "high", "see the agent's audit events agent_certificate_renew"),
    "WCP-IDP-001": (
        "identity provider",
        "high",
        "check the provider's URL, its TLS certificate (ca_file) and the client or service credentials",
    ),
    "WCP-IDP-002": ("directory transport", "high", "use ldaps:// or start_tls: true and drop insecure: true"),
    "WCP-TEN-001": ("tenant homes", "high", "chmod 0750 (or stricter) each tenant home; owner the tenant"),
    "WCP-UNIT-001": ("unit exposure", "medium", "install the units from packaging/ (`wcp360 install`)"),
}


def check(id: str, status: Status, detail: str, name: str | None = None) -> Check:
    known_name, severity, remedy = CATALOGUE[id]
    return Check(
        name or known_name,
        status,
        detail,
        id=id,
        severity="info" if status == "ok" else severity,
        remedy="" if status == "ok" else remedy,
    )


def run_checks(config: Config) -> list[Check]:
    checks: list[Callable[[Config], list[Check]]] = [
        _database,
        _redis,
        _sandbox,
        _cgroups,
        _tenant_cgroups,
        _pressure,
        _firewall,
        _audit_log,
        _config_directory,
        _listening,
        _agent,
        _service_user,
        _code_readable,
        _tenant_homes,
        _jails,
        _tenant_databases,
        _websites,
        _identity_providers,
        _units,
    ]
    results: list[Check] = [check("WCP-CFG-001", "ok", f"{config.server.mode} mode, {config.config_dir}")]
    for probe in checks:
        try:
            results += probe(config)
        except Exception as exc:  # a check that breaks is a finding, not a crash of the doctor
            results.append(Check(probe.__name__.strip("_"), "fail", f"{type(exc).__name__}: {str(exc)[:200]}"))
    return results


def _database(config: Config) -> list[Check]:
    from wcp360.store.database import create_db_engine
    from wcp360.store.migrate import HEAD_REVISION, current_revision

    db = config.database
    if db.type == "sqlite":
        path = db.path if db.path.is_absolute() else config.data_dir / db.path
        if not path.exists():  # do not create it here: serve or `db upgrade` does
            return [check("WCP-DB-001", "fail", f"sqlite: {path} does not exist yet (wcp360 db upgrade)")]
    engine = create_db_engine(db, config.data_dir)
    try:
        with engine.connect():
            pass
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = HEAD_REVISION  # tested against Alembic's head; reading Alembic's scripts costs ~1 s
    where = (
        config.database.type if config.database.type == "sqlite" else f"{config.database.host}:{config.database.port}"
    )
    if current != head:
        return [check("WCP-DB-001", "fail", f"{where}: schema at {current}, code expects {head} (wcp360 db upgrade)")]
    return [check("WCP-DB-001", "ok", f"{where}, schema {current}")]


def _redis(config: Config) -> list[Check]:
    found = []
    for id_, url in (
        ("WCP-DB-002", config.rate_limiting.storage),
        ("WCP-DB-003", config.intrusion_detection.storage),
    ):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            # Said, not left out: one process keeps these in memory, and several servers would not
            # share them (rate_limit.yml storage / ids.yml storage).
            found.append(check(id_, "ok", f"not used: {url} (one server; share with redis:// for several)"))
            continue
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
            found.append(check(id_, "ok", url.split("@")[-1]))
        except redis.RedisError as exc:
            found.append(check(id_, "fail", f"{url.split('@')[-1]}: {exc}"))
        finally:
            client.close()
    return found


def _probe_confinement(conn: Any, scratch: str) -> None:
    """In a spawned process, as a sandbox worker does: confine, then report what was granted."""
    from wcp360.workloads.engine.confine import confine

    read_only = [Path(p) for p in sys.path if p] + [Path(sys.prefix), Path(sys.base_prefix), Path("/usr"), Path("/lib")]
    conn.send(asdict(confine(read_only, [Path(scratch)])))


def _sandbox(config: Config) -> list[Check]:
    with tempfile.TemporaryDirectory() as scratch:
        parent, child = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(target=_probe_confinement, args=(child, scratch))
        process.start()
        state: dict[str, Any] = parent.recv() if parent.poll(60) else {}
        process.join(10)
    if not state:
        return [check("WCP-SBX-000", "fail", "a confined probe process did not start")]
    notes = "; ".join(state["notes"])
    abi = state["landlock_abi"]
    return [
        check(
            "WCP-SBX-001",
            "ok" if state["landlock"] else "warn",
            f"ABI {abi}, workers' filesystem confined" if state["landlock"] else f"not applied: {notes}",
        ),
        check(
            "WCP-SBX-002",
            "ok" if state["seccomp"] else "warn",
            "allowlist filter loads" if state["seccomp"] else f"not applied: {notes}",
        ),
        check("WCP-SBX-003", "ok" if state["no_new_privs"] else "warn", "set by workers"),
        check(
            "WCP-SBX-004",
            "ok",
            f"wasmtime-py {_version('wasmtime')}, {config.sandbox.workers} workers configured",
        ),
    ]


def _cgroups(config: Config) -> list[Check]:
    from wcp360.system.cgroups import read_layout

    layout = read_layout()
    v2, v1 = sorted(layout.v2_controllers), layout.v1
    missing = [c for c in CGROUP_CONTROLLERS if c not in v2]
    if not missing:
        return [check("WCP-KRN-001", "ok", f"cgroup v2 with {' '.join(v2)}")]
    on_v1 = [c for c in missing if c in v1 or (c == "io" and "blkio" in v1)]
    if on_v1:
        where = ", ".join(f"{c} ({v1.get(c) or v1.get('blkio')})" for c in on_v1)  # blkio: io on v1
        return [
            check(
                "WCP-KRN-001",
                "warn",
                f"hybrid layout: cgroup v2 offers {' '.join(v2) or 'no controllers'}; on v1: {where}; "
                "tenant limits use the v1 fallback",
            )
        ]
    return [check("WCP-KRN-001", "warn", f"controllers missing: {', '.join(missing)}: tenant limits unavailable")]


def _pressure(config: Config) -> list[Check]:
    readable = [name for name in ("cpu", "memory", "io") if _readable(Path("/proc/pressure") / name)]
    if len(readable) < 3:
        return [check("WCP-KRN-002", "warn", f"readable: {', '.join(readable) or 'none'} (kernel psi=1)")]
    return [check("WCP-KRN-002", "ok", "cpu memory io")]


def _firewall(config: Config) -> list[Check]:
    settings = config.server.firewall
    nft = shutil.which("nft")
    if not settings.enabled:
        available = "nft available" if nft else "nft not installed"
        return [
            check("WCP-NET-002", "warn", f"disabled in wcp360.yml (opt-in); {available}; bans are enforced in the app")
        ]
    if nft is None:
        return [check("WCP-NET-002", "fail", "enabled but nft is not installed (Debian package nftables)")]
    command = [nft, "list", "table", "inet", "wcp360"]
    if settings.netns:
        command = ["ip", "netns", "exec", settings.netns, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    if result.returncode != 0:
        return [check("WCP-NET-002", "fail", f"table inet wcp360 not present: {result.stderr.strip()[:200]}")]
    return [check("WCP-NET-002", "ok", "table inet wcp360 applied")]


def _audit_log(config: Config) -> list[Check]:
    from wcp360.audit.append_only import is_append_only
    from wcp360.audit.setup import audit_file

    directory, name, _ = audit_file(config)
    path = directory / name
    if not path.exists():
        return [check("WCP-AUD-001", "warn", f"{path} not written yet (the server creates it)")]
    if is_append_only(path):
        return [check("WCP-AUD-001", "ok", f"{path}, append-only (chattr +a)")]
    status: Status = "warn" if config.production else "ok"
    return [
        check(
            "WCP-AUD-001",
            status,
            f"{path}, not append-only ({'needs CAP_LINUX_IMMUTABLE' if config.production else 'dev mode'})",
        )
    ]


def _readable(path: Path) -> bool:
    try:
        path.read_text()
        return True
    except OSError:
        return False


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _config_directory(config: Config) -> list[Check]:
    info = config.config_dir.stat()
    mode = info.st_mode & 0o777
    if mode & 0o077:
        return [check("WCP-CFG-002", "fail", f"{config.config_dir} is mode {mode:04o}; must be 0700")]
    if config.production and info.st_uid != 0:
        return [check("WCP-CFG-002", "warn", f"{config.config_dir} is 0700 but owned by uid {info.st_uid}, not root")]
    return [check("WCP-CFG-002", "ok", f"{config.config_dir} 0700, uid {info.st_uid}")]


def listening_sockets(tables: list[str] | None = None) -> list[tuple[str, int]]:
    """TCP sockets in LISTEN on an address other than loopback (seed 000 §6 "leaking ports"), from
    /proc/net/tcp and tcp6 (or the given tables' text)."""
    import ipaddress

    if tables is None:
        tables = []
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                tables.append(Path(path).read_text())
            except OSError:
                continue
    found = []
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            address = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if not address.is_loopback:
                found.append((str(address), int(port_hex, 16)))
    return sorted(set(found))


def _listening(config: Config) -> list[Check]:
    allowed = {443}
    if config.server.firewall.http:
        allowed.add(80)
    if config.server.firewall.ssh:
        allowed.add(22)
    leaking = [f"{host}:{port}" for host, port in listening_sockets() if port not in allowed]
    if leaking:
        return [check("WCP-NET-001", "warn", f"listening beyond loopback: {', '.join(leaking[:12])}")]
    return [check("WCP-NET-001", "ok", "only allowed ports listen beyond loopback")]


def _agent(config: Config) -> list[Check]:
    import stat as stat_module

    from wcp360.system.client import agent_listening

    settings = config.server.agent
    path = settings.socket
    if not agent_listening(path):
        detail = f"no agent at {path}: the panel does the agent's work in process with its own privileges" + (
            "" if os.geteuid() == 0 else " (not root: tenants get no Linux user, the firewall is not applied)"
        )
        status: Status = "fail" if settings.mode == "socket" or config.production else "warn"
        return [check("WCP-AGT-001", status, detail)]
    found = [check("WCP-AGT-001", "ok", f"agent listening at {path}")]
    sock, directory = os.lstat(path), os.lstat(path.parent)
    problems = []
    if sock.st_uid != 0 or stat_module.S_IMODE(sock.st_mode) & 0o007:
        problems.append(f"socket uid {sock.st_uid} mode {stat_module.S_IMODE(sock.st_mode):04o}")
    if directory.st_uid != 0 or stat_module.S_IMODE(directory.st_mode) & 0o027:
        problems.append(f"directory uid {directory.st_uid} mode {stat_module.S_IMODE(directory.st_mode):04o}")
    found.append(
        check("WCP-AGT-002", "fail", "; ".join(problems))
        if problems
        else check("WCP-AGT-002", "ok", "socket root 0660 in a root 0750 directory (or stricter)")
    )
    return found


def _service_user(config: Config) -> list[Check]:
    import pwd

    name = config.server.user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        status: Status = "fail" if config.production else "warn"
        return [check("WCP-USR-001", status, f"no user {name}: serve started as root would refuse (production)")]
    if entry.pw_uid == 0:
        return [check("WCP-USR-001", "fail", f"{name} is uid 0")]
    serving_as_root = [pid for pid, args, uid in _processes() if uid == 0 and "serve" in args and "wcp360" in args]
    if serving_as_root:
        pids = ", ".join(map(str, serving_as_root))
        return [check("WCP-USR-001", "fail", f"wcp360 serve running as root: pid {pids}")]
    return [check("WCP-USR-001", "ok", f"{name} uid {entry.pw_uid}, shell {entry.pw_shell}")]


def _processes() -> list[tuple[int, str, int]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            uid = entry.stat().st_uid
        except OSError:
            continue
        found.append((int(entry.name), args, uid))
    return found


def _tenant_homes(config: Config) -> list[Check]:
    root = config.server.tenants.home_root
    if not root.is_dir():
        return [check("WCP-TEN-001", "ok", f"{root} does not exist yet (no tenant)")]
    loose = []
    homes = 0
    for home in root.iterdir():
        info = os.lstat(home)
        homes += 1
        if home.is_symlink() or info.st_mode & 0o027 or info.st_uid == 0:
            loose.append(f"{home.name} ({info.st_mode & 0o777:04o}, uid {info.st_uid})")
    if loose:
        return [check("WCP-TEN-001", "fail", f"homes open to others or not the tenant's: {', '.join(loose[:10])}")]
    return [check("WCP-TEN-001", "ok", f"{homes} homes in {root}, 0750 or stricter")]


UNIT_LIMITS = {"wcp360.service": 2.0, "wcp360-agent.service": 2.5}


def unit_exposure(path: Path) -> float | None:
    """`systemd-analyze security --offline=true` (works without systemd as PID 1); None if absent."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return None
    result = subprocess.run(  # noqa: S603
        [analyze, "security", "--offline=true", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    for line in result.stdout.splitlines():
        if "Overall exposure level" in line:
            return float(line.split(":", 1)[1].split()[0])
    return None


def _units(config: Config) -> list[Check]:
    installed = Path("/etc/systemd/system")
    source = Path(__file__).resolve().parents[2] / "packaging"
    found = []
    for name, limit in UNIT_LIMITS.items():
        path = installed / name if (installed / name).exists() else source / name
        if not path.exists():
            found.append(check("WCP-UNIT-001", "warn", f"{name} not installed", name=f"unit {name}"))
            continue
        score = unit_exposure(path)
        if score is None:
            found.append(check("WCP-UNIT-001", "warn", f"{path}: systemd-analyze unavailable", name=f"unit {name}"))
            continue
        status: Status = "ok" if score <= limit else "warn"
        found.append(check("WCP-UNIT-001", status, f"{path}: exposure {score} (limit {limit})", name=f"unit {name}"))
    return found


def _code_readable(config: Config) -> list[Check]:
    """After the drop the server still imports modules and starts worker interpreters: its Python
    and WCP360's code must be readable by the service user (not beneath /root, say)."""
    import pwd

    import wcp360
    from wcp360.privileges import drop_to, service_account

    if os.geteuid() != 0:
        return [check("WCP-USR-002", "ok", f"running as uid {os.geteuid()}: the code is readable by this user")]
    try:
        pwd.getpwnam(config.server.user)
    except KeyError:
        return [check("WCP-USR-002", "warn", f"no user {config.server.user} to check with")]
    account = service_account(config.server.user)
    needed = [Path(os.path.realpath(sys.executable)), Path(wcp360.__file__).resolve(), Path(os.__file__).resolve()]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, as the server after its drop
        os.close(read)
        try:
            drop_to(account)
            refused = []
            for path in needed:
                try:
                    with open(path, "rb"):
                        pass
                except OSError:
                    refused.append(str(path))
            os.write(write, "\n".join(refused).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        refused = [line for line in answer.read().splitlines() if line]
    os.waitpid(pid, 0)
    if refused:
        return [check("WCP-USR-002", "fail", f"{config.server.user} cannot read: {', '.join(refused)}")]
    return [check("WCP-USR-002", "ok", f"{config.server.user} can read the interpreter and WCP360's code")]


def _tenant_cgroups(config: Config) -> list[Check]:
    """Which cgroup version the agent uses for tenants' limits, and what it cannot enforce."""
    from wcp360.system.cgroups import TenantCgroups, read_layout

    cgroups = TenantCgroups(read_layout())
    mode = cgroups.mode
    if mode == "none":
        return [check("WCP-KRN-003", "fail", "no cgroup hierarchy: tenants' processes, memory and cpu are unbounded")]
    where = {"v2": "cgroup v2", "hybrid": "v1 controllers, with v2 for kill and PSI", "v1": "cgroup v1"}[mode]
    placed = ", ".join(sorted(cgroups.groups("<tenant>")))
    status: Status = "ok" if mode == "v2" else "warn"
    return [check("WCP-KRN-003", status, f"{where}: each tenant in wcp360/<tenant> of {placed}")]


def _jails(config: Config) -> list[Check]:
    """Tenants' jails (system/jail.py): bubblewrap as the tenant's uid (unprivileged user
    namespaces), the helper that applies Landlock, the runtime classes' seccomp programs."""
    from wcp360.kernel import landlock_abi
    from wcp360.system import syscalls
    from wcp360.system.jail import system_mounts
    from wcp360.system.jail_exec import helper_path
    from wcp360.system.supervise import php_fpm_binary

    found: list[Check] = []
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        found.append(check("WCP-JAIL-001", "fail", "bubblewrap is not installed: tenants' commands cannot be jailed"))
    else:
        probe = subprocess.run(  # noqa: S603
            [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", *system_mounts(), "--", "/usr/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            detail = f"bubblewrap cannot make a sandbox here: {probe.stderr.strip()[:200]}"
            found.append(check("WCP-JAIL-001", "fail", detail))
        else:
            found.append(check("WCP-JAIL-001", "ok", "bubblewrap: every namespace, read-only system, own home"))
    built = helper_path(config.server.agent.state_dir / "bin")
    if built.is_file():
        found.append(check("WCP-JAIL-002", "ok", f"built: {built}"))
    elif shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"):
        found.append(check("WCP-JAIL-002", "ok", "not built yet; the agent builds it at the first jail"))
    else:
        found.append(check("WCP-JAIL-002", "fail", "no C compiler and no built helper: no jail can start"))
    abi = landlock_abi()
    missing = [
        what
        for needed, what in (
            (1, "filesystem rules"),
            (4, "TCP bind/connect rules"),
            (5, "device ioctl rules"),
            (6, "scoping of abstract Unix sockets and signals"),
        )
        if abi < needed
    ]
    if abi == 0:
        found.append(check("WCP-JAIL-003", "fail", "no Landlock: jails rely on namespaces and seccomp alone"))
    elif missing:
        found.append(check("WCP-JAIL-003", "warn", f"Landlock ABI {abi}: missing {', '.join(missing)}"))
    else:
        found.append(check("WCP-JAIL-003", "ok", f"Landlock ABI {abi}: filesystem, TCP, ioctl, scopes"))
    try:
        sizes = {runtime: len(syscalls.program(runtime)) for runtime in syscalls.RUNTIME_CLASSES}
    except Exception as exc:  # libseccomp missing or refusing: said, not a doctor crash
        found.append(check("WCP-JAIL-004", "fail", f"seccomp programs cannot be built: {exc}"))
    else:
        classes = ", ".join(f"{runtime} {size} B" for runtime, size in sizes.items())
        found.append(check("WCP-JAIL-004", "ok", f"allowlists per runtime class: {classes}"))
    binary = php_fpm_binary()
    found.append(
        check("WCP-JAIL-005", "ok", f"{binary}")
        if binary
        else check("WCP-JAIL-005", "warn", "php-fpm is not installed: tenants' php processes are refused")
    )
    return found


def _websites(config: Config) -> list[Check]:
    """Tenants' sites (system/sites.py): nginx to serve them, clamd to scan uploads, and the
    certificates the agent keeps (expired, or due and not renewed)."""
    import datetime as dt

    from cryptography import x509

    from wcp360.system import clamd

    websites = config.server.tenants.websites
    if not websites.enabled:
        return []
    found: list[Check] = []
    if os.access(websites.nginx, os.X_OK):
        found.append(check("WCP-WEB-001", "ok", f"{websites.nginx}"))
    else:
        found.append(check("WCP-WEB-001", "fail", f"no nginx at {websites.nginx}: sites cannot be served"))
    scan = websites.uploads.scan
    if not scan.enabled:
        found.append(check("WCP-WEB-002", "warn", "uploads into sites are not scanned for malware"))
    elif clamd.ping(scan.clamd_socket):
        found.append(check("WCP-WEB-002", "ok", f"clamd answers at {scan.clamd_socket}"))
    else:
        found.append(check("WCP-WEB-002", "fail", f"clamd does not answer at {scan.clamd_socket}: uploads are refused"))
    certificates = config.server.agent.state_dir / "web" / "certs"
    try:
        chains = sorted(certificates.glob("*/fullchain.pem"))
        now = dt.datetime.now(dt.UTC)
        expired, due = [], []
        for chain in chains:
            not_after = x509.load_pem_x509_certificate(chain.read_bytes()).not_valid_after_utc
            if not_after <= now:
                expired.append(chain.parent.name)
            elif not_after - websites.acme.renew_before <= now - dt.timedelta(days=1):
                due.append(chain.parent.name)  # a day past its renewal and not renewed
    except (OSError, ValueError) as exc:
        found.append(check("WCP-WEB-003", "warn", f"not checked (run as root): {str(exc)[:200]}"))
        return found
    if expired:
        found.append(check("WCP-WEB-003", "fail", f"expired: {', '.join(expired)[:300]}"))
    elif due:
        found.append(check("WCP-WEB-003", "warn", f"not renewed in time: {', '.join(due)[:300]}"))
    else:
        found.append(check("WCP-WEB-003", "ok", f"{len(chains)} certificates, none expired or overdue"))
    return found


def _identity_providers(config: Config) -> list[Check]:
    """Each enabled directory and OpenID provider answers over verified TLS (discovery and keys;
    the directory's service bind), and no directory password travels in clear."""
    from wcp360.errors import WcpError
    from wcp360.identity.providers import Providers

    providers = Providers(config.auth)
    probes: list[tuple[str, Callable[[], str]]] = [(name, p.check) for name, p in providers.oidc.items()]
    found: list[Check] = []
    directory = providers.directory
    if directory is not None:
        probes.insert(0, (directory.name, directory.check))
        settings = directory.settings
        if not directory.ldaps and not settings.start_tls:
            detail = "plain ldap:// without TLS" + (" (insecure: true)" if settings.insecure else " (loopback)")
            found.append(
                check("WCP-IDP-002", "warn", f"{directory.name}: {detail}", name=f"directory {directory.name}")
            )
    for name, probe in probes:
        try:
            found.append(check("WCP-IDP-001", "ok", probe(), name=f"provider {name}"))
        except (WcpError, OSError) as error:
            detail = getattr(error, "detail", None) or f"{type(error).__name__}: {error}"
            found.append(check("WCP-IDP-001", "fail", str(detail)[:300], name=f"provider {name}"))
    return found


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
SERVER_ACCOUNTS = ("root", "mariadb.sys", "mysql")


def _tenant_databases(config: Config) -> list[Check]:
    """The tenants' database servers as the agent reaches them: no account reachable from a
    non-local host, no anonymous one, no tenant user with a global privilege (MariaDB); no
    `trust` for non-loopback hosts and the tenants' password block in place (PostgreSQL)."""
    from wcp360.system.databases import TENANTS_ROLE, DatabaseFailed, MariaDB, PostgreSQL

    databases = config.server.tenants.databases
    found: list[Check] = []
    if databases.mariadb.enabled:
        mariadb = MariaDB(databases.mariadb)
        try:
            accounts, empty = mariadb.accounts(), mariadb.passwordless()
        except (DatabaseFailed, OSError) as exc:
            found.append(check("WCP-TDB-001", "warn", f"not checked: {str(exc)[:200]}"))
        else:
            problems = [
                *(f"anonymous ''@{host}" for user, host, _ in accounts if user == ""),
                *(f"remote {user}@{host}" for user, host, _ in accounts if host not in LOCAL_HOSTS),
                *(
                    f"global privileges {user}@{host}"
                    for user, host, elevated in accounts
                    if elevated and user not in SERVER_ACCOUNTS
                ),
            ]
            if problems:
                found.append(check("WCP-TDB-001", "fail", "; ".join(problems)[:300]))
            elif empty:
                detail = f"no password: {', '.join(empty)}: whoever reaches the socket signs in as it"
                found.append(check("WCP-TDB-001", "warn", detail[:300]))
            else:
                detail = f"{len(accounts)} accounts, all local, none anonymous, elevated or without a password"
                found.append(check("WCP-TDB-001", "ok", detail))
    if databases.postgresql.enabled:
        try:
            rules = PostgreSQL(databases.postgresql).hba_rules()
        except (DatabaseFailed, OSError) as exc:
            found.append(check("WCP-TDB-002", "warn", f"not checked: {str(exc)[:200]}"))
        else:
            remote_trust = [
                f"{kind} {address}"
                for kind, address, method, _ in rules
                if method == "trust" and kind.startswith("host") and address not in ("127.0.0.1", "::1")
            ]
            guarded = any(f"+{TENANTS_ROLE}" in users for *_, users in rules)
            if remote_trust:
                found.append(check("WCP-TDB-002", "fail", f"trust for non-loopback hosts: {', '.join(remote_trust)}"))
            elif not guarded:
                detail = "no tenants' password block: tenants sign in as pg_hba's other lines say"
                found.append(check("WCP-TDB-002", "warn", detail))
            else:
                local_trust = any(method == "trust" for _, _, method, _ in rules)
                detail = "tenants need a password (socket, loopback); no trust for other hosts"
                found.append(check("WCP-TDB-002", "ok", detail + ("; others have local trust" if local_trust else "")))
    return found
