"""`wcp360 doctor`: what this host gives WCP360, checked for real, one line per check.

`fail` means WCP360 cannot do its job as configured (no database, schema behind, a configured Redis
down, the firewall enabled but not applied); `warn` means it runs degraded (a kernel feature
missing, so a protection is weaker than designed); `ok` means as designed. The sandbox check
spawns a worker-like process that confines itself and reports what the kernel granted.
"""

from __future__ import annotations

import multiprocessing
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


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def run_checks(config: Config) -> list[Check]:
    checks: list[Callable[[Config], list[Check]]] = [
        _database,
        _redis,
        _sandbox,
        _cgroups,
        _pressure,
        _firewall,
        _audit_log,
    ]
    results: list[Check] = [Check("config", "ok", f"{config.server.mode} mode, {config.config_dir}")]
    for check in checks:
        try:
            results += check(config)
        except Exception as exc:  # a check that breaks is a finding, not a crash of the doctor
            results.append(Check(check.__name__.strip("_"), "fail", f"{type(exc).__name__}: {str(exc)[:200]}"))
    return results


def _database(config: Config) -> list[Check]:
    from wcp360.store.database import create_db_engine
    from wcp360.store.migrate import HEAD_REVISION, current_revision

    db = config.database
    if db.type == "sqlite":
        path = db.path if db.path.is_absolute() else config.data_dir / db.path
        if not path.exists():  # do not create it here: serve or `db upgrade` does
            return [Check("database", "fail", f"sqlite: {path} does not exist yet (wcp360 db upgrade)")]
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
        return [Check("database", "fail", f"{where}: schema at {current}, code expects {head} (wcp360 db upgrade)")]
    return [Check("database", "ok", f"{where}, schema {current}")]


def _redis(config: Config) -> list[Check]:
    found = []
    for name, url in (
        ("redis (rate limits)", config.rate_limiting.storage),
        ("redis (ids windows)", config.intrusion_detection.storage),
    ):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            # Said, not left out: one process keeps these in memory, and several servers would not
            # share them (rate_limit.yml storage / ids.yml storage).
            found.append(Check(name, "ok", f"not used: {url} (one server; share with redis:// for several)"))
            continue
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
            found.append(Check(name, "ok", url.split("@")[-1]))
        except redis.RedisError as exc:
            found.append(Check(name, "fail", f"{url.split('@')[-1]}: {exc}"))
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
        return [Check("sandbox workers", "fail", "a confined probe process did not start")]
    notes = "; ".join(state["notes"])
    abi = state["landlock_abi"]
    return [
        Check(
            "landlock",
            "ok" if state["landlock"] else "warn",
            f"ABI {abi}, workers' filesystem confined" if state["landlock"] else f"not applied: {notes}",
        ),
        Check(
            "seccomp",
            "ok" if state["seccomp"] else "warn",
            "allowlist filter loads" if state["seccomp"] else f"not applied: {notes}",
        ),
        Check("no_new_privs", "ok" if state["no_new_privs"] else "warn", "set by workers"),
        Check(
            "wasmtime",
            "ok",
            f"wasmtime-py {_version('wasmtime')}, {config.sandbox.workers} workers configured",
        ),
    ]


def _cgroups(config: Config) -> list[Check]:
    controllers_file = Path("/sys/fs/cgroup/cgroup.controllers")
    if not controllers_file.exists():
        return [
            Check("cgroup v2", "warn", "no unified hierarchy at /sys/fs/cgroup: resource limits for jails unavailable")
        ]
    controllers = controllers_file.read_text().split()
    missing = [c for c in CGROUP_CONTROLLERS if c not in controllers]
    if missing:
        return [Check("cgroup v2", "warn", f"controllers missing: {', '.join(missing)} (have {' '.join(controllers)})")]
    return [Check("cgroup v2", "ok", " ".join(controllers))]


def _pressure(config: Config) -> list[Check]:
    readable = [name for name in ("cpu", "memory", "io") if _readable(Path("/proc/pressure") / name)]
    if len(readable) < 3:
        return [Check("pressure stall info", "warn", f"readable: {', '.join(readable) or 'none'} (kernel psi=1)")]
    return [Check("pressure stall info", "ok", "cpu memory io")]


def _firewall(config: Config) -> list[Check]:
    settings = config.server.firewall
    nft = shutil.which("nft")
    if not settings.enabled:
        available = "nft available" if nft else "nft not installed"
        return [
            Check("firewall", "warn", f"disabled in wcp360.yml (opt-in); {available}; bans are enforced in the app")
        ]
    if nft is None:
        return [Check("firewall", "fail", "enabled but nft is not installed (Debian package nftables)")]
    command = [nft, "list", "table", "inet", "wcp360"]
    if settings.netns:
        command = ["ip", "netns", "exec", settings.netns, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    if result.returncode != 0:
        return [Check("firewall", "fail", f"table inet wcp360 not present: {result.stderr.strip()[:200]}")]
    return [Check("firewall", "ok", "table inet wcp360 applied")]


def _audit_log(config: Config) -> list[Check]:
    from wcp360.audit.append_only import is_append_only
    from wcp360.audit.setup import audit_file

    directory, name, _ = audit_file(config)
    path = directory / name
    if not path.exists():
        return [Check("audit log", "warn", f"{path} not written yet (the server creates it)")]
    if is_append_only(path):
        return [Check("audit log", "ok", f"{path}, append-only (chattr +a)")]
    status: Status = "warn" if config.production else "ok"
    return [
        Check(
            "audit log",
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
