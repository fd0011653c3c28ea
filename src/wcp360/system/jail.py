"""A tenant's command in a jail (issue 14, first part): bubblewrap for the namespaces and mounts,
started as the tenant's own uid, placed in the tenant's control groups before it runs.

What the jail gives the command (bubblewrap 0.8, Debian's; unprivileged, through a user namespace):
- new mount, PID, IPC, UTS, cgroup and user namespaces, and a network namespace with nothing in it
  unless `network` is asked for (no loopback of other tenants or of the host's services);
- its own home read-write at its real path, `/usr` and `/etc` read-only (`/bin`, `/lib*` as the
  host's usr-merge links), a private `/tmp`, a minimal `/dev`, a fresh `/proc` (no other process);
  nothing else of the host, so no other tenant's home at all;
- no capabilities (bounding set empty), no_new_privs (setuid binaries gain nothing), a session
  of its own (no TIOCSTI into a terminal), and death with its parent.

The command runs only after its processes are in the tenant's cgroups: bubblewrap blocks on a
pipe (`--block-fd`) after setting up and before exec, and reports the sandbox's pid
(`--info-fd`); both pids are placed, then the pipe is written. Landlock and a seccomp allowlist
per runtime class are the next layer (issue 14 continues); they are not applied yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wcp360.system.cgroups import TenantCgroups

OUTPUT_LIMIT = 1024 * 1024
# Only what a program needs to find its tools: nothing of the agent's environment leaks in.
PATH = "/usr/local/bin:/usr/bin:/bin"


class JailUnavailable(RuntimeError):
    pass


def system_mounts() -> list[str]:
    """`/usr` and `/etc` read-only, and `/bin`, `/sbin`, `/lib*` as the host has them (usr-merge
    links, or read-only directories)."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{top}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{top}"]
    return args


@dataclass(frozen=True)
class Jail:
    tenant: str
    uid: int
    gid: int
    home: Path
    network: bool = False

    def argv(self, command: list[str], block_fd: int, info_fd: int) -> list[str]:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise JailUnavailable("bubblewrap is not installed (Debian package bubblewrap)")
        args = [bwrap, "--unshare-all"]
        if self.network:
            args.append("--share-net")
        args += ["--die-with-parent", "--new-session", *system_mounts()]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108 - the jail's own, empty
        args += ["--bind", str(self.home), str(self.home), "--chdir", str(self.home)]
        args += ["--block-fd", str(block_fd), "--info-fd", str(info_fd), "--", *command]
        return args


@dataclass(frozen=True)
class JobResult:
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool


def run_job(
    jail: Jail, command: list[str], cgroups: TenantCgroups | None, timeout: float, limit: int = OUTPUT_LIMIT
) -> JobResult:
    """Run `command` in `jail` to its end (or `timeout` seconds, then the whole sandbox is killed)."""
    block_read, block_write = os.pipe()
    info_read, info_write = os.pipe()
    env = {"PATH": PATH, "HOME": str(jail.home), "LANG": "C.UTF-8", "USER": jail.tenant}
    try:
        process = subprocess.Popen(  # noqa: S603 - an argument list; the command runs inside the jail only
            jail.argv(command, block_read, info_write),
            user=jail.uid,
            group=jail.gid,
            extra_groups=[],
            env=env,
            pass_fds=(block_read, info_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(block_read)
        os.close(info_write)
    try:
        with os.fdopen(info_read, "rb") as info:
            reported = info.read()
        if cgroups is not None and reported:
            # A sandbox that failed to set up has exited already (nothing to place): its exit
            # status and stderr say why.
            with contextlib.suppress(ProcessLookupError):
                cgroups.place(jail.tenant, process.pid)
                cgroups.place(jail.tenant, int(json.loads(reported)["child-pid"]))
        # BrokenPipe: bubblewrap stopped before running anything; its exit status says why.
        with contextlib.suppress(BrokenPipeError):
            os.write(block_write, b"x")
    finally:
        os.close(block_write)
    timed_out = False
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # bubblewrap's death ends the sandbox: its PID namespace's init goes with it
        out, err = process.communicate()
        timed_out = True
    truncated = len(out) > limit or len(err) > limit
    return JobResult(
        exit_code=process.returncode,
        stdout=out[:limit].decode(errors="replace"),
        stderr=err[:limit].decode(errors="replace"),
        truncated=truncated,
        timed_out=timed_out,
    )
