"""Tenants' jails: starting one, and serving PHP from one, each beside its baseline, same run.

    python benchmarks/bench_jail.py [--starts 200] [--requests 2000] [--rounds 5]      # as root

Start:
- jailed: `wcp360.system.jail.run_job` as the agent runs a job: bubblewrap as the tenant with
  every namespace, the system mounts, /proc, /dev, /tmp, the home; the block/info descriptor
  handshake and placement of both pids in the tenant's cgroups (v1 pids, memory, cpu, cpuacct,
  blkio, freezer and the v2 group here); the runtime class's seccomp program; the helper's
  rlimits and Landlock; then /bin/true. Output captured as a job's is.
- bare: `bwrap --unshare-all --ro-bind /usr /usr <the /bin, /lib links> /bin/true` as the same uid
  (through setpriv, as the jail), output captured: the floor (bubblewrap cannot run /bin/true
  with less).

PHP request (FastCGI GET of a one-line page, one connection per request as nginx makes them):
- jailed: the tenant's php-fpm pool as the agent supervises it (jail, seccomp php class,
  Landlock, cgroups), pool configuration from `supervise.php_pool`;
- unjailed: the same php-fpm binary and the same pool configuration, started as the tenant's
  uid with nothing else around it.

Rounds alternate the two sides so drift hits both alike. Medians of the rounds' p50 and p99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' FastCGI client
from tests.fastcgi import request as fastcgi

from wcp360.config.server import FirewallConfig, TenantLimits, TenantsConfig
from wcp360.system.host import HostAgent
from wcp360.system.jail import run_job, system_mounts
from wcp360.system.protocol import ProcessSpec, ProcessStart, TenantCreate, TenantDelete
from wcp360.system.supervise import php_fpm_binary, php_pool


def bare(uid: int, gid: int, starts: int) -> list[float]:
    # /usr and the /bin, /lib* links (system_mounts() without /etc): bubblewrap needs them to find /bin/true
    argv = ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", *system_mounts()[6:]]
    # As the tenant, the way the jail becomes it too (setpriv, so Python may vfork).
    as_uid = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    argv.append("/bin/true")
    timings = []
    for _ in range(starts):
        began = time.perf_counter()
        done = subprocess.run(as_uid + argv, capture_output=True, check=False)
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


PAGE = "<?php echo 'hello ', 40 + 2, PHP_EOL;"


def php_round(socket_path: str, script: str, requests: int) -> list[float]:
    timings = []
    for _ in range(requests):
        began = time.perf_counter()
        out, _ = fastcgi(socket_path, script)
        timings.append(time.perf_counter() - began)
        assert b"hello 42" in out, out
    return timings


def unjailed_php(host: HostAgent, name: str, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    tenant, _ = host._existing(name)
    socket_path = f"{home}/run/bare.sock"
    pool = php_pool(tenant, "bare", socket_path, max_children=5)
    config = home / "tmp" / "bare-fpm.conf"
    config.write_bytes(pool)
    os.chown(config, tenant.uid, tenant.gid)
    binary = php_fpm_binary()
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--nodaemonize", "--force-stderr", "--fpm-config", str(config)],
        user=tenant.uid, group=tenant.gid, extra_groups=[], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return process, socket_path


def wait_for(path: str) -> None:
    while not Path(path).exists():
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
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
            php(host, name, root / "www" / name, options.requests, options.rounds)
        finally:
            host.delete(TenantDelete(tenant=name))


def php(host: HostAgent, name: str, home: Path, requests: int, rounds: int) -> None:
    (home / "public" / "index.php").write_text(PAGE)
    tenant, _ = host._existing(name)
    os.chown(home / "public" / "index.php", tenant.uid, tenant.gid)
    script = str(home / "public" / "index.php")
    jailed_state = host.process_start(ProcessStart(tenant=name, process=ProcessSpec(name="php", runtime="php")))
    bare_process, bare_socket = unjailed_php(host, name, home)
    try:
        wait_for(jailed_state.socket)
        wait_for(bare_socket)
        for socket_path in (jailed_state.socket, bare_socket):
            php_round(socket_path, script, 20)  # warm: ondemand workers started, opcache filled
        results: dict[str, list[tuple[float, float]]] = {"unjailed": [], "jailed": []}
        for _ in range(rounds):
            for label, socket_path in (("unjailed", bare_socket), ("jailed", jailed_state.socket)):
                timings = sorted(php_round(socket_path, script, requests))
                results[label].append((statistics.median(timings), timings[int(len(timings) * 0.99) - 1]))
        medians = {label: statistics.median(p50 for p50, _ in rounds_) for label, rounds_ in results.items()}
        for label, rounds_ in results.items():
            p99 = statistics.median(p99 for _, p99 in rounds_)
            print(f"php {label:9} p50 {medians[label] * 1000:7.3f} ms  p99 {p99 * 1000:7.3f} ms")
        print(f"php jailed/unjailed {medians['jailed'] / medians['unjailed']:.2f}x (target <= 1.1x)")
    finally:
        bare_process.terminate()
        bare_process.wait()
        host.close()


if __name__ == "__main__":
    main()
