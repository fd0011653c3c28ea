"""What a worker process does to itself before it runs tenant code: no_new_privs, Landlock
(filesystem: read only where it must, write only its scratch dir), seccomp (an allowlist of
the system calls a WASM runtime needs; no sockets, exec or fork). Each step reports whether the
kernel granted it; the worker runs either way, and the degraded parts are reported.

Landlock is called through its three system calls with ctypes: PyPI has only a development release
of a wrapper. seccomp goes through libseccomp (pyseccomp).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wcp360.kernel import landlock_abi

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
PR_SET_NO_NEW_PRIVS = 38
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_RULE_PATH_BENEATH = 1
# ABI 1-3 filesystem rights (execute, write, read, readdir, remove dir/file, make char/dir/reg/sock/fifo/
# block/sym, refer, truncate).
_ALL_FS = [1 << n for n in range(15)]
READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read_file, read_dir
DIRECTORY_ONLY = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8)
WRITE_EXTRA = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 14)  # write, remove, make dir/reg, truncate

# The system calls a worker may make once confined; everything else fails with EPERM (the worker
# survives a refusal; a kill would only turn it into a restart). Taken from strace of workers
# running the test suite's modules (WASI C program, preopens, snapshots, timeouts, outbound relay)
# plus what CPython, glibc and wasmtime reach on other paths (memory, time, signals, threads).
# Not here: sockets, exec, fork (clone without CLONE_THREAD), ptrace, mount, namespaces, keys,
# bpf, module loading, uid changes.
ALLOWED_SYSCALLS = (
    # memory
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "memfd_create", "membarrier",
    # files and the pipe to the pool (Landlock decides which paths)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close", "close_range",
    "openat", "open", "newfstatat", "fstat", "stat", "lstat", "statx", "statfs", "fstatfs",
    "getdents64", "readlink", "readlinkat", "access", "faccessat", "faccessat2", "fcntl", "ioctl",
    "dup", "dup2", "dup3", "pipe2", "fsync", "fdatasync", "ftruncate", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "mkdir", "mkdirat", "getcwd", "utimensat", "fadvise64",
    # waiting, time, randomness
    "futex", "futex_waitv", "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2", "nanosleep", "clock_nanosleep",
    "clock_gettime", "clock_getres", "gettimeofday", "sched_yield", "getrandom",
    # threads, signals, process information
    "set_robust_list", "get_robust_list", "rseq", "set_tid_address", "gettid", "getpid", "getppid",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "tgkill", "restart_syscall",
    "sched_getaffinity", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getrlimit", "prlimit64", "getrusage", "uname", "sysinfo", "prctl", "arch_prctl",
    "exit", "exit_group", "seccomp",
)  # fmt: skip
CLONE_THREAD = 0x00010000


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass
class Confinement:
    no_new_privs: bool = False
    landlock_abi: int = 0
    landlock: bool = False
    seccomp: bool = False
    notes: list[str] = field(default_factory=list)


def confine(read_only: Iterable[Path], writable: Iterable[Path]) -> Confinement:
    state = Confinement()
    # Load libseccomp before Landlock closes the filesystem (locating a library may touch /tmp).
    try:
        import pyseccomp  # noqa: F401
    except Exception as exc:
        state.notes.append(f"libseccomp not loadable: {exc}")
    state.no_new_privs = _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    state.landlock_abi = landlock_abi()
    if state.landlock_abi:
        state.landlock = _landlock(state, read_only, writable)
    else:
        state.notes.append("landlock unavailable in this kernel")
    state.seccomp = _seccomp(state)
    return state


def _landlock(state: Confinement, read_only: Iterable[Path], writable: Iterable[Path]) -> bool:
    rights = 0
    for index, bit in enumerate(_ALL_FS):
        if index <= 12 or (index == 13 and state.landlock_abi >= 2) or (index == 14 and state.landlock_abi >= 3):
            rights |= bit
    attr = _RulesetAttr(rights)
    ruleset = _libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        state.notes.append(f"landlock_create_ruleset failed: {errno.errorcode.get(ctypes.get_errno())}")
        return False
    try:
        for paths, allowed in ((read_only, READ), (writable, READ | WRITE_EXTRA)):
            for path in paths:
                if not path.exists():
                    continue
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    access = (
                        allowed & rights
                        if path.is_dir()
                        else (allowed & rights) & ~((1 << 3) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8))
                    )
                    rule = _PathBeneath(access, fd)
                    if (
                        _libc.syscall(
                            SYS_LANDLOCK_ADD_RULE,
                            ctypes.c_int(ruleset),
                            ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                            ctypes.byref(rule),
                            ctypes.c_uint32(0),
                        )
                        < 0
                    ):
                        state.notes.append(f"landlock rule for {path} refused")
                finally:
                    os.close(fd)
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            state.notes.append("landlock_restrict_self refused")
            return False
        return True
    finally:
        os.close(ruleset)


def _seccomp(state: Confinement) -> bool:
    try:
        import pyseccomp as seccomp

        rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
        for name in ALLOWED_SYSCALLS:
            with contextlib.suppress(Exception):  # not a system call on this architecture
                rules.add_rule(seccomp.ALLOW, name)
        # Threads yes, new processes no. clone3 passes its flags in memory a filter cannot read,
        # so it answers ENOSYS and glibc falls back to clone, whose flags can be checked.
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        rules.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, CLONE_THREAD))
        rules.load()
        return True
    except Exception as exc:
        state.notes.append(f"seccomp unavailable: {type(exc).__name__}: {exc}")
        return False
