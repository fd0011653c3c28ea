"""Starting a jailed `/bin/true` with the whole stack beside bare bubblewrap, same run.

    python benchmarks/bench_jail.py [--starts 200] [--rounds 3]      # as root

- jailed: `wcp360.system.jail.run_job` as the agent runs a job: bubblewrap as the tenant with
  every namespace, the system mounts, /proc, /dev, /tmp, the home; the block/info descriptor
  handshake and placement of both pids in the tenant's cgroups (v1 pids, memory, cpu, cpuacct,
  blkio, freezer and the v2 group here); the runtime class's seccomp program; the helper's
  rlimits and Landlock; then /bin/true. Output captured as a job's is.
- bare: `bwrap --unshare-all --ro-bind /usr /usr <the /bin, /lib links> /bin/true` as the same uid,
  output captured the same way: the floor (bubblewrap cannot run /bin/true with less).

Rounds alternate bare and jailed so drift hits both alike. Medians of the rounds' p50 and p99.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.system.host import HostAgent
from wcp360.system.jail import run_job, system_mounts
from wcp360.system.protocol import TenantCreate, TenantDelete


def bare(uid: int, gid: int, starts: int) -> list[float]:
    # /usr and the /bin, /lib* links (system_mounts() without /etc): bubblewrap needs them to find /bin/true
    argv = ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", *system_mounts()[6:]]
    argv.append("/bin/true")
    timings = []
    for _ in range(starts):
        began = time.perf_counter()
        done = subprocess.run(argv, user=uid, group=gid, extra_groups=[], capture_output=True, check=False)
        timings.append(time.perf_counter() - began)
        assert done.returncode == 0, done.stderr
    return timings


def jailed(host: HostAgent, name: str, starts: int) -> list[float]:
    tenant, _ = host._existing(name)
    jail = host.jail(tenant, "static")
    timings = []
    for _ in range(starts):
        began = time.perf_counter()
        result = run_job(jail, ["/bin/true"], host.cgroups, timeout=60)
        timings.append(time.perf_counter() - began)
        assert result.exit_code == 0, result.stderr
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        root.chmod(0o755)
        config = TenantsConfig(home_root=root / "www", archive_dir=root / "archives", uid_min=43000, uid_max=43999)
        # pids.max is high here: cgroup v1 keeps charging a finished jail's PID namespace for about
        # 1.5 s (the kernel frees it lazily), so a tenant's short jobs in a tight loop pile up.
        host = HostAgent(config, FirewallConfig(), root / "state")
        name = f"bj{uuid.uuid4().hex[:8]}"
        tenant = host.create(TenantCreate(tenant=name, limits=TenantLimits(processes=4096, memory=256 * 1024**2)))
        try:
            results: dict[str, list[tuple[float, float]]] = {"bare": [], "jailed": []}
            for _ in range(options.rounds):
                for label, measure in (
                    ("bare", lambda: bare(tenant.uid, tenant.gid, options.starts)),
                    ("jailed", lambda: jailed(host, name, options.starts)),
                ):
                    timings = sorted(measure())
                    results[label].append((statistics.median(timings), timings[int(len(timings) * 0.99) - 1]))
            medians = {label: statistics.median(p50 for p50, _ in rounds) for label, rounds in results.items()}
            for label, rounds in results.items():
                p99 = statistics.median(p99 for _, p99 in rounds)
                print(f"{label:7} p50 {medians[label] * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms")
            print(f"jailed/bare {medians['jailed'] / medians['bare']:.2f}x (target <= 1.5x)")
        finally:
            host.delete(TenantDelete(tenant=name))


if __name__ == "__main__":
    main()
