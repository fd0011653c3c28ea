"""Each tenant's control groups, for real on this host's layout (hybrid here: pids, memory, cpu and
blkio on v1, the v2 mount with no controllers but cgroup.kill and per-group PSI). Attacks that
must stay inside the tenant's group: a fork bomb, a memory hog, a process forking while it is killed."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wcp360.config.server import TenantLimits
from wcp360.system.cgroups import TenantCgroups, read_layout

LAYOUT = read_layout()
pytestmark = [
    pytest.mark.skipif(LAYOUT.mode == "none", reason="no cgroup hierarchy mounted (kernel without cgroups)"),
]
LIMITS = TenantLimits(processes=16, memory=64 * 1024**2, cpu_percent=50, io_weight=200)


@pytest.fixture
def tenant() -> Iterator[tuple[TenantCgroups, str]]:
    cgroups = TenantCgroups(LAYOUT)
    name = f"wtcg{uuid.uuid4().hex[:8]}"
    cgroups.create(name, LIMITS)
    yield cgroups, name
    cgroups.remove(name)
    assert not any(path.exists() for path in cgroups.groups(name).values())


def _held(cgroups: TenantCgroups, name: str, program: str) -> subprocess.Popen[bytes]:
    """A child that waits for one byte before running `program`: placed in the group first, so
    nothing it does happens outside it."""
    child = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdin.read(1)\n{program}"], stdin=subprocess.PIPE)
    cgroups.place(name, child.pid)
    assert child.stdin is not None
    child.stdin.write(b"x")
    child.stdin.close()
    return child


def test_limits_are_written_where_this_host_enforces_them(tenant: tuple[TenantCgroups, str]) -> None:
    cgroups, name = tenant
    groups = cgroups.groups(name)
    if LAYOUT.mode == "v2":
        assert (groups["v2"] / "pids.max").read_text().strip() == "16"
        assert (groups["v2"] / "memory.max").read_text().strip() == str(64 * 1024**2)
        assert (groups["v2"] / "cpu.max").read_text().split() == ["50000", "100000"]
    else:
        assert (groups["pids"] / "pids.max").read_text().strip() == "16"
        assert (groups["memory"] / "memory.limit_in_bytes").read_text().strip() == str(64 * 1024**2)
        assert (groups["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    changed = cgroups.apply(name, LIMITS.model_copy(update={"processes": 8}))
    assert "disk: not enforced yet (filesystem quotas)" in changed
    where = groups["v2"] if LAYOUT.mode == "v2" else groups["pids"]
    assert (where / "pids.max").read_text().strip() == "8"


def test_a_fork_bomb_stops_at_pids_max(tenant: tuple[TenantCgroups, str]) -> None:
    cgroups, name = tenant
    bomb = _held(
        cgroups,
        name,
        "import os, time\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        print(n, flush=True); break\n"
        "    if pid == 0:\n"
        "        time.sleep(3600)\n"
        "    n += 1\n"
        "time.sleep(3600)\n",
    )
    members = cgroups.members(name)
    while len(members) < 16:  # readiness: the bomb has filled its group
        members = cgroups.members(name)
    assert len(members) == 16 and cgroups.usage(name).pids == 16
    assert cgroups.kill(name) >= 16
    assert bomb.wait() == -9
    while cgroups.members(name):
        pass
    # The host still forks.
    assert subprocess.run(["true"], check=False).returncode == 0


def test_a_memory_hog_is_killed_inside_its_group(tenant: tuple[TenantCgroups, str]) -> None:
    cgroups, name = tenant
    hog = _held(cgroups, name, "blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 1024 * 1024))\n")
    assert hog.wait() == -9  # the OOM killer of its own group, not the host's
    usage = cgroups.usage(name)
    assert usage.memory_bytes is not None and usage.memory_bytes <= 64 * 1024**2


def test_usage_and_pressure_are_read_per_tenant(tenant: tuple[TenantCgroups, str]) -> None:
    cgroups, name = tenant
    worker = _held(cgroups, name, "sum(range(3_000_000))\nimport time\ntime.sleep(3600)\n")
    usage = cgroups.usage(name)
    while usage.cpu_seconds is None or usage.cpu_seconds == 0:
        usage = cgroups.usage(name)
    assert usage.pids == 1
    if LAYOUT.v2_root is not None:
        pressure = cgroups.pressure(name)
        assert set(pressure) >= {"cpu", "memory", "io"} and pressure["cpu"].startswith("some avg10=")
    cgroups.kill(name)
    assert worker.wait() == -9


def test_layouts_are_read_as_they_are(tmp_path: Path) -> None:
    hybrid = read_layout(
        f"cgroup2 {tmp_path / 'unified'} cgroup2 rw 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
    )
    assert hybrid.mode == "hybrid" and set(hybrid.v1) == {"memory", "pids", "cpu"}
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    pure = read_layout(f"cgroup2 {tmp_path / 'v2'} cgroup2 rw 0 0\n")
    assert pure.mode == "v2" and pure.v2_controllers >= {"cpu", "memory", "pids", "io"}
    assert read_layout("").mode == "none"
