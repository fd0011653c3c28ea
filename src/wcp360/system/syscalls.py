"""The system calls a tenant's jailed process may make, per runtime class, as seccomp programs.

Each runtime class is a union of named groups, taken from `strace -f` of real runs as an
unprivileged user (November 2026, Debian 12): php-fpm 8.2 serving a page that uses sessions,
JSON, hashing, files and scandir to FastCGI requests and stopping gracefully; Node.js 20 serving
HTTP on a Unix socket with fs and crypto; a shell script of coreutils (mkdir, cp, mv, ln, chmod,
rm, find, grep, tar, gzip, sed, awk, sort, xargs, timeout, date, id). Plus what glibc reaches on
other paths of the same programs (the `*at` and 64 variants, time, memory advice). The program
that runs first in the jail (jail_exec.c) needs `prctl`, `setrlimit`, the Landlock calls,
`close_range` and `execve`: they are in the base group.

Never in any class: ptrace and process_vm_*, mount and its family, unshare/setns, keyctl and its
family, io_uring_*, bpf, perf_event_open, userfaultfd, module loading, kexec, reboot, swap,
acct, quotactl, syslog, open_by_handle_at, personality, the set*id family (a jail has no other id
to change to), and anything new since this list: the default answer is EPERM. Threads and
processes yes, namespaces no: `clone` is allowed only without a CLONE_NEW* flag, and `clone3`
(whose flags a filter cannot read) answers ENOSYS so glibc and libuv fall back to `clone`.
Sockets: Unix always; IPv4/IPv6 stream and datagram only (never raw or packet; the kernel would
refuse them for want of CAP_NET_RAW too, this makes it two layers). The network namespace and
Landlock decide where a TCP socket may connect.

TIOCSTI is not filtered: the jail has no terminal (stdin is /dev/null, the output pipes, its own
session), and libseccomp 2.5 cannot compare one argument twice in a rule.
"""

from __future__ import annotations

import errno
import functools
import socket
import tempfile
from typing import Literal

RuntimeClass = Literal["static", "php", "node"]
RUNTIME_CLASSES: tuple[RuntimeClass, ...] = ("static", "php", "node")

GROUPS: dict[str, tuple[str, ...]] = {
    "base": (
        "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close", "close_range",
        "openat", "open", "creat", "newfstatat", "fstat", "stat", "lstat", "statx", "statfs", "fstatfs",
        "getdents64", "readlink", "readlinkat", "access", "faccessat", "faccessat2", "fcntl", "ioctl",
        "dup", "dup2", "dup3", "pipe", "pipe2", "getcwd", "chdir", "fchdir", "fadvise64", "flock",
        "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore", "membarrier",
        "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
        "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
        "getrandom", "sched_yield", "sched_getaffinity", "getpriority", "get_mempolicy",
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "sigaltstack", "restart_syscall", "alarm", "setitimer", "getitimer", "pause",
        "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
        "getresgid", "getgroups", "getpgrp", "getpgid", "getsid", "capget",
        "uname", "sysinfo", "times", "getrusage", "getrlimit", "setrlimit", "prlimit64", "umask",
        "prctl", "arch_prctl", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
        "execve", "exit", "exit_group",
    ),
    "file_changes": (
        "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
        "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchown", "fchownat",
        "chown", "lchown", "truncate", "ftruncate", "fallocate", "fsync", "fdatasync", "sync_file_range",
        "utimensat", "utimes", "futimesat", "copy_file_range", "sendfile", "splice", "tee",
        "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "mknodat",
        "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "memfd_create",
    ),
    "processes": (
        "vfork", "fork", "wait4", "waitid", "kill", "tgkill", "tkill", "setpgid", "setsid",
        "setpriority", "set_mempolicy", "sched_setaffinity", "sched_getparam", "sched_getscheduler",
        "timer_create", "timer_settime", "timer_gettime", "timer_delete", "timerfd_create",
        "timerfd_settime", "timerfd_gettime", "signalfd4", "pidfd_open", "pidfd_send_signal",
    ),
    "polling": (
        "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
        "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    ),
    # glibc's name service reaches nscd through a Unix socket even from `id`.
    "sockets": (
        "connect", "getsockname", "getpeername", "setsockopt", "getsockopt", "shutdown", "sendto",
        "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "socketpair",
    ),
    "serving": ("bind", "listen", "accept", "accept4"),
    # Node (V8) protects its code pages with memory protection keys.
    "jit": ("pkey_alloc", "pkey_free", "pkey_mprotect"),
}  # fmt: skip

CLASSES: dict[RuntimeClass, tuple[str, ...]] = {
    # Jobs: a shell and coreutils; nothing listens (nginx serves static files itself).
    "static": ("base", "file_changes", "processes", "polling", "sockets"),
    # php-fpm forks its workers and serves FastCGI on a Unix socket.
    "php": ("base", "file_changes", "processes", "polling", "sockets", "serving"),
    "node": ("base", "file_changes", "processes", "polling", "sockets", "serving", "jit"),
}

NAMESPACE_FLAGS = 0x7E020080  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
SOCKET_TYPE_MASK = 0xF  # the type without SOCK_NONBLOCK / SOCK_CLOEXEC


def allowed(runtime: RuntimeClass) -> frozenset[str]:
    return frozenset(name for group in CLASSES[runtime] for name in GROUPS[group])


@functools.cache
def program(runtime: RuntimeClass) -> bytes:
    """The class's filter as the classic BPF program bubblewrap's `--seccomp FD` loads."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in sorted(allowed(runtime)):
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except (OSError, RuntimeError, ValueError):  # not a system call on this architecture
            continue
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, NAMESPACE_FLAGS, 0))
    rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, socket.AF_UNIX))
    for family in (socket.AF_INET, socket.AF_INET6):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            family_is = seccomp.Arg(0, seccomp.EQ, family)
            kind_is = seccomp.Arg(1, seccomp.MASKED_EQ, SOCKET_TYPE_MASK, int(kind))
            rules.add_rule(seccomp.ALLOW, "socket", family_is, kind_is)
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()

