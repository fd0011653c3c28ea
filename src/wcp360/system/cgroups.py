"""Each tenant's control groups: the limits of seed 000 §2 (pids.max against fork bombs, memory
against exhaustion, cpu.max and the io weight against noisy neighbours), kept by the agent.

cgroup v2 is the target; a host whose controllers are bound to v1 hierarchies (a hybrid layout,
as on the machine this was built on) gets the v1 files for the same limits, and still the v2
mount's own features where it has them: a child there has `cgroup.kill`, `cgroup.freeze` and
per-group PSI (`cpu.pressure`, `memory.pressure`, `io.pressure`) even with no controller enabled.
Each tenant is `wcp360/<tenant>` in every hierarchy that serves one of its limits; what the host
cannot enforce is returned as a sentence (shown on the tenant, reported by doctor).

systemd hosts would get `wcp360-tenant-<name>.slice` units instead; without systemd as PID 1 the
agent writes cgroupfs itself, which is what this module does (no library wraps cgroupfs writes
for both versions; each is a file write).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wcp360.config.server import TenantLimits

GROUP = "wcp360"
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "blkio", "freezer")
Mode = Literal["v2", "hybrid", "v1", "none"]


@dataclass(frozen=True)
class Layout:
    v2_root: Path | None = None
    v2_controllers: frozenset[str] = frozenset()
    v1: dict[str, Path] = field(default_factory=dict)

    @property
    def mode(self) -> Mode:
        if self.v2_root is not None and {"pids", "memory", "cpu"} <= self.v2_controllers:
            return "v2"
        if self.v1 and self.v2_root is not None:
            return "hybrid"
        return "v1" if self.v1 else "none"


def read_layout(mounts: str | None = None) -> Layout:
    """The cgroup hierarchies from /proc/mounts (or the given text)."""
    text = mounts if mounts is not None else Path("/proc/mounts").read_text()
    v2_root: Path | None = None
    v2_controllers: frozenset[str] = frozenset()
    v1: dict[str, Path] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        if parts[2] == "cgroup2":
            v2_root = Path(parts[1])
            listing = v2_root / "cgroup.controllers"
            v2_controllers = frozenset(listing.read_text().split()) if listing.exists() else frozenset()
        elif parts[2] == "cgroup":
            for option in parts[3].split(","):
                if option in V1_CONTROLLERS:
                    v1[option] = Path(parts[1])
    return Layout(v2_root, v2_controllers, v1)


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float | None
    memory_bytes: int | None
    pids: int | None


class TenantCgroups:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        v2 = layout.v2_controllers if layout.v2_root is not None else frozenset()
        # Where each limit lives: the v2 group when v2 has the controller, else its v1 hierarchy.
        self._v1_used = {c: m for c, m in layout.v1.items() if c not in v2 and c != "io"}
        self._v2_enabled = v2 & {"pids", "memory", "cpu", "io"}

    @property
    def mode(self) -> Mode:
        return self.layout.mode

    def groups(self, tenant: str) -> dict[str, Path]:
        """ "v2" and each v1 controller in use -> the tenant's directory there."""
        found = {controller: mount / GROUP / tenant for controller, mount in self._v1_used.items()}
        if self.layout.v2_root is not None:
            found["v2"] = self.layout.v2_root / GROUP / tenant
        return found

    # -- lifecycle -------------------------------------------------------------------------

    def create(self, tenant: str, limits: TenantLimits) -> list[str]:
        """Make the tenant's groups and apply `limits`; what cannot be enforced, as sentences."""
        if self.layout.v2_root is not None and self._v2_enabled:
            parent = self.layout.v2_root / GROUP
            parent.mkdir(mode=0o755, exist_ok=True)
            wanted = " ".join(f"+{c}" for c in sorted(self._v2_enabled))
            for directory in (self.layout.v2_root, parent):
                (directory / "cgroup.subtree_control").write_text(wanted)
        for path in self.groups(tenant).values():
            path.parent.mkdir(mode=0o755, exist_ok=True)
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                # Left by a tenant of that name whose removal was cut short: taken over only
                # empty (a process in it would run under the new tenant's limits and name).
                if (path / "cgroup.procs").read_text().strip():
                    raise

        return self.apply(tenant, limits)

    def apply(self, tenant: str, limits: TenantLimits) -> list[str]:
        groups = self.groups(tenant)
        degraded: list[str] = []
        high = limits.memory * 9 // 10
        if "pids" in self._v2_enabled:
            _write(groups["v2"] / "pids.max", limits.processes)
        elif "pids" in groups:
            _write(groups["pids"] / "pids.max", limits.processes)
        else:
            degraded.append("processes: no pids controller (fork bombs are bounded by rlimits only)")
        if "memory" in self._v2_enabled:
            _write(groups["v2"] / "memory.max", limits.memory)
            _write(groups["v2"] / "memory.high", high)
        elif "memory" in groups:
            memory = groups["memory"]
            # memsw bounds memory + swap; it may never be below the memory limit, so order matters.
            current = int((memory / "memory.limit_in_bytes").read_text())
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists() and limits.memory > current:
                _write(swap, limits.memory)
            _write(memory / "memory.limit_in_bytes", limits.memory)
            if swap.exists():
                _write(swap, limits.memory)
            _write(memory / "memory.soft_limit_in_bytes", high)
        else:
            degraded.append("memory: no memory controller")
        quota = limits.cpu_percent * CPU_PERIOD_US // 100
        if "cpu" in self._v2_enabled:
            _write(groups["v2"] / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        elif "cpu" in groups:
            _write(groups["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(groups["cpu"] / "cpu.cfs_quota_us", quota)
        else:
            degraded.append("cpu: no cpu controller")
        if "io" in self._v2_enabled:
            _write(groups["v2"] / "io.weight", f"default {limits.io_weight}")
        elif "blkio" in groups and (groups["blkio"] / "blkio.bfq.weight").exists():
            # BFQ's weight is 1-1000 where v2's io.weight is 1-10000 (both default to 100).
            _write(groups["blkio"] / "blkio.bfq.weight", min(limits.io_weight, 1000))
        else:
            degraded.append("io weight: no io controller (v2) or BFQ weight (v1)")
        degraded.append("disk: not enforced yet (filesystem quotas)")
        return degraded

    def placed_in(self, tenant: str) -> dict[str, Path]:
        """The groups a process must join: every one that limits or counts it. Not the v1
        freezer where the v2 group can kill (cgroup.kill), nor v1 cpuacct where the v2 group
        counts CPU time (cpu.stat): each v1 move takes a global lock and costs ~70 us."""
        groups = self.groups(tenant)
        v2 = groups.get("v2")
        if v2 is not None and (v2 / "cgroup.kill").exists():
            groups.pop("freezer", None)
        if v2 is not None and (v2 / "cpu.stat").exists():
            groups.pop("cpuacct", None)
        return groups

    def place(self, tenant: str, pid: int) -> None:
        """Move `pid` into the tenant's groups (the jail does this before it execs tenant code),
        skipping those it is in already (a child forked after its parent was placed)."""
        current = _membership(self.layout, pid)
        for key, path in self.placed_in(tenant).items():
            if current.get(key) != path:
                _write(path / "cgroup.procs", pid)

    def members(self, tenant: str) -> set[int]:
        found: set[int] = set()
        for path in self.groups(tenant).values():
            try:
                found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                continue
        return found

    def kill(self, tenant: str) -> int:
        """Kill every process in the tenant's groups, forks included: cgroup.kill where the v2
        group has it, else freeze (v1 freezer), kill each member, thaw. Returns how many."""
        groups = self.groups(tenant)
        killed = self.members(tenant)
        v2 = groups.get("v2")
        if v2 is not None and (v2 / "cgroup.kill").exists():
            _write(v2 / "cgroup.kill", 1)
            return len(killed)
        freezer = groups.get("freezer")
        for _ in range(100):
            pids = self.members(tenant)
            if not pids:
                return len(killed)
            if freezer is not None:
                _write(freezer / "freezer.state", "FROZEN")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if freezer is not None:
                _write(freezer / "freezer.state", "THAWED")
            killed |= pids
        raise OSError(f"processes of tenant {tenant} kept appearing in its cgroup")

    def remove(self, tenant: str) -> None:
        """Remove the tenant's groups (their processes killed first: a group with members stays)."""
        self.kill(tenant)
        for path in self.groups(tenant).values():
            for _ in range(1000):  # a killed process leaves its group once the kernel has reaped it
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if not self.members(tenant):
                        os.sched_yield()
                    else:
                        self.kill(tenant)

    # -- reading -----------------------------------------------------------------------------

    def usage(self, tenant: str) -> Usage:
        groups = self.groups(tenant)
        cpu = memory = pids = None
        if "cpu" in self._v2_enabled or (groups.get("v2") and (groups["v2"] / "cpu.stat").exists()):
            for line in (groups["v2"] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    cpu = int(line.split()[1]) / 1e6
        elif "cpuacct" in groups:
            cpu = int((groups["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        if "memory" in self._v2_enabled:
            memory = int((groups["v2"] / "memory.current").read_text())
        elif "memory" in groups:
            memory = int((groups["memory"] / "memory.usage_in_bytes").read_text())
        if "pids" in self._v2_enabled:
            pids = int((groups["v2"] / "pids.current").read_text())
        elif "pids" in groups:
            pids = int((groups["pids"] / "pids.current").read_text())
        return Usage(cpu, memory, pids)

    def pressure(self, tenant: str) -> dict[str, str]:
        """PSI of the tenant's v2 group ("some avg10=..." lines), where the host provides it."""
        v2 = self.groups(tenant).get("v2")
        found: dict[str, str] = {}
        for resource in ("cpu", "memory", "io"):
            path = v2 / f"{resource}.pressure" if v2 is not None else None
            if path is not None and path.exists():
                found[resource] = path.read_text().splitlines()[0]
        return found


def _membership(layout: Layout, pid: int) -> dict[str, Path]:
    """Where `pid` is now, keyed as `groups()` keys them ("v2", or a v1 controller), as paths
    beneath each hierarchy's mount (unknown ones left out)."""
    found: dict[str, Path] = {}
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, relative = line.split(":", 2)
        if not controllers and layout.v2_root is not None:
            found["v2"] = layout.v2_root / relative.lstrip("/")
        for controller in controllers.split(","):
            if controller in layout.v1:
                found[controller] = layout.v1[controller] / relative.lstrip("/")
    return found


def _write(path: Path, value: object) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))
