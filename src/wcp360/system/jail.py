"""A tenant's process in a jail: bubblewrap for the namespaces and mounts, started as the tenant's
own uid, placed in the tenant's control groups, then Landlock and rlimits, then the command.

The layers, in the order a start goes through them:
1. bubblewrap (Debian's 0.8; unprivileged, through a user namespace) makes new mount, PID, IPC,
   UTS, cgroup and user namespaces, and a network namespace with nothing in it unless `network`
   is asked for (no loopback of other tenants or of the host's services); shows the tenant its
   own home read-write at its real path, `/usr` and `/etc` read-only (`/bin`, `/lib*` as the host
   has them), a private `/tmp`, a minimal `/dev` (DEVICES), a fresh `/proc` (no other process), and nothing
   else of the host; empties the capability sets; sets no_new_privs (setuid binaries gain
   nothing); starts a session of its own (no TIOCSTI into a terminal); forbids user namespaces
   inside (`--disable-userns`); dies with its parent.
2. The sandbox blocks (`--block-fd`) after setting up and before its command; bubblewrap reports
   the sandbox's pid (`--info-fd`); the agent places both pids in the tenant's cgroups and only
   then lets it go on: nothing of the tenant ever runs outside its limits.
3. bubblewrap loads the runtime class's seccomp program (syscalls.py) just before its exec.
4. It execs the helper (jail_exec.c), which sets the rlimits, restricts itself with Landlock
   (read and execute beneath the system's directories, write beneath the home and /tmp only, TCP
   bind never and TCP connect only with `network`, abstract Unix sockets and signals scoped to the
   jail), closes every other descriptor and execs the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from wcp360.system import syscalls
from wcp360.system.cgroups import TenantCgroups
from wcp360.system.syscalls import RuntimeClass

OUTPUT_LIMIT = 1024 * 1024
# Only what a program needs to find its tools: nothing of the agent's environment leaks in.
PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_TOPS = ("bin", "sbin", "lib", "lib32", "lib64")
# No core dumps (a dump is the process's memory written where the tenant reads it, and a cost);
# descriptors bounded per process (the cgroup bounds processes and memory).
RLIMITS = ("core:0:0", "nofile:4096:4096")


# The whole /dev of a jail: five harmless devices and the descriptor links. Not bubblewrap's
# `--dev`, which adds a pty instance, /dev/tty and /dev/shm: a jail has no terminal, tenants'
# PHP and Node need no POSIX shared memory, and the three mounts fewer save ~0.7 ms per start.
DEVICES = [
    *(
        arg
        for name in ("null", "zero", "full", "random", "urandom")
        for arg in ("--dev-bind", f"/dev/{name}", f"/dev/{name}")
    ),
    *("--symlink", "/proc/self/fd", "/dev/fd"),
    *(
        arg
        for n, name in enumerate(("stdin", "stdout", "stderr"))
        for arg in ("--symlink", f"/proc/self/fd/{n}", f"/dev/{name}")
    ),
]


class JailUnavailable(RuntimeError):
    pass


def system_mounts() -> list[str]:
    """`/usr` and `/etc` read-only, and `/bin`, `/sbin`, `/lib*` as the host has them (usr-merge
    links, or read-only directories)."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in SYSTEM_TOPS:
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
    helper: Path
    runtime: RuntimeClass = "static"
    network: bool = False
    # Read-only files for the command, each bound at its path inside the jail (a php-fpm
    # configuration the agent wrote): path inside -> contents.
    files: Mapping[str, bytes] = field(default_factory=dict)
    landlock_optional: bool = False
    # With `network`: the TCP ports it may connect to (None: every port).
    tcp_ports: tuple[int, ...] | None = ()
    # Host directories of sockets the tenant may connect to (its database servers'), bound
    # read-only at their own paths: connecting needs no write access to the directory.
    socket_dirs: tuple[Path, ...] = ()

    def argv(self, command: list[str], fds: _Descriptors) -> list[str]:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise JailUnavailable("bubblewrap is not installed (Debian package bubblewrap)")
        args = [bwrap, "--unshare-all", "--unshare-user"]
        if self.network:
            args.append("--share-net")
        args += ["--die-with-parent", "--new-session", "--disable-userns", *system_mounts()]
        args += ["--proc", "/proc", *DEVICES, "--tmpfs", "/tmp"]  # noqa: S108 - the jail's own, empty
        args += ["--bind", str(self.home), str(self.home), "--chdir", str(self.home)]
        for directory in self.socket_dirs:
            args += ["--ro-bind", str(directory), str(directory)]
        for inside, fd in fds.files.items():
            args += ["--perms", "0444", "--ro-bind-data", str(fd), inside]
        args += ["--seccomp", str(fds.seccomp), "--block-fd", str(fds.block), "--info-fd", str(fds.info)]
        # The helper runs from the descriptor the agent opened: its file sits in the agent's own
        # directory, which no tenant may traverse, and it is closed before the command runs.
        return [*args, "--", f"/proc/self/fd/{fds.helper}", *self._landlock_and_limits(), "--", *command]

    def _landlock_and_limits(self) -> list[str]:
        args = ["-o"] if self.landlock_optional else []
        if self.network and self.tcp_ports != ():  # no port allowed: TCP connect stays refused
            args.append("-n")
            for port in self.tcp_ports or ():
                args += ["-p", str(port)]
        for top in ("/usr", "/etc", "/proc", "/run", *(f"/{top}" for top in SYSTEM_TOPS)):
            args += ["-r", top]
        for directory in self.socket_dirs:  # beneath /run usually; elsewhere, readable too
            args += ["-r", str(directory)]
        args += ["-d", "/dev", "-w", "/tmp", "-w", str(self.home)]  # noqa: S108 - the jail's own /tmp
        for limit in RLIMITS:
            args += ["-l", limit]
        return args

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"PATH": PATH, "HOME": str(self.home), "LANG": "C.UTF-8", "USER": self.tenant, **(extra or {})}


@dataclass
class _Descriptors:
    helper: int
    seccomp: int
    block: int
    info: int
    files: dict[str, int]

    def passed(self) -> tuple[int, ...]:
        return (self.helper, self.seccomp, self.block, self.info, *self.files.values())


def _data_fd(data: bytes) -> int:
    """A pipe's read end holding `data`, for bubblewrap to read whole (a seccomp program of ~2 KiB,
    a configuration file of a few: one pipe buffer, 64 KiB)."""
    if len(data) > 65536:
        raise JailUnavailable(f"{len(data)} bytes do not fit a pipe for bubblewrap")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


def _as_tenant(jail: Jail) -> list[str]:
    """util-linux's setpriv becomes the tenant, then execs bubblewrap. Python could change the
    uid itself (`Popen(user=...)`), but then it must fork() the whole agent instead of vfork():
    measured from a 140 MB agent, 8-12 ms per start against 5 ms this way."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise JailUnavailable("setpriv is not installed (Debian package util-linux)")
    return [setpriv, f"--reuid={jail.uid}", f"--regid={jail.gid}", "--clear-groups", "--"]


def spawn(
    jail: Jail,
    command: list[str],
    cgroups: TenantCgroups | None,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.PIPE,
    environment: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` in `jail`, in the tenant's cgroups before it runs; the bubblewrap process is
    returned (its exit status is the command's, and killing it ends the whole sandbox)."""
    opened: list[int] = []
    block_read, block_write = os.pipe()
    info_read, info_write = os.pipe()
    try:
        opened += [os.open(jail.helper, os.O_RDONLY | os.O_CLOEXEC), _data_fd(syscalls.program(jail.runtime))]
        files = {inside: _data_fd(data) for inside, data in jail.files.items()}
        opened += files.values()
        fds = _Descriptors(opened[0], opened[1], block_read, info_write, files)
        process = subprocess.Popen(  # noqa: S603 - an argument list; the command runs inside the jail only
            [*_as_tenant(jail), *jail.argv(command, fds)],
            env=jail.environment(environment),
            pass_fds=fds.passed(),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    except BaseException:
        for fd in (block_write, info_read):
            os.close(fd)
        raise
    finally:
        for fd in (block_read, info_write, *opened):
            os.close(fd)
    try:
        if cgroups is not None:
            # bubblewrap first, while it sets up: the sandbox it forks then starts in the groups
            # already (checked below, and placed if the fork came first).
            with contextlib.suppress(ProcessLookupError):
                cgroups.place(jail.tenant, process.pid)
        with os.fdopen(info_read, "rb") as info:
            reported = info.read()
        if cgroups is not None and reported:
            # A sandbox that failed to set up has exited already (nothing to place): its exit
            # status and stderr say why.
            with contextlib.suppress(ProcessLookupError):
                cgroups.place(jail.tenant, int(json.loads(reported)["child-pid"]))
        # BrokenPipe: bubblewrap stopped before running anything; its exit status says why.
        with contextlib.suppress(BrokenPipeError):
            os.write(block_write, b"x")
    finally:
        os.close(block_write)
    return process


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
    """Run `command` in `jail` to its end (or `timeout` seconds, then the whole sandbox is killed).
    At most `limit` bytes of each stream are kept; the rest is read and dropped, so a job printing
    without end costs the agent no memory and cannot block on a full pipe."""
    process = spawn(jail, command, cgroups)
    assert process.stdout is not None and process.stderr is not None
    kept: dict[int, bytearray] = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    truncated = timed_out = False
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as waiting:
        for stream in (process.stdout, process.stderr):
            waiting.register(stream, selectors.EVENT_READ)
        while waiting.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()  # bubblewrap's death ends the sandbox: its PID namespace's init goes with it
                timed_out = True
                deadline = float("inf")  # now read what is left until the pipes close
                continue
            for key, _ in waiting.select(min(left, 3600)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    waiting.unregister(key.fileobj)
                    continue
                buffer = kept[key.fd]
                room = limit - len(buffer)
                truncated = truncated or len(chunk) > room
                buffer += chunk[: max(room, 0)]
    process.stdout.close()
    process.stderr.close()
    process.wait()
    out, err = (bytes(kept[fd]) for fd in kept)
    return JobResult(
        exit_code=process.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        truncated=truncated,
        timed_out=timed_out,
    )
