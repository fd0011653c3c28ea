"""Dropping root (seed 000 "The Bootstrap Rule", seed 001 "Never run WCP360 as root").

`wcp360 serve` started as root binds its listener, then calls `drop_to(user)` before it serves a
single request. The order matters: the capability bounding set can only be emptied while
CAP_SETPCAP is held, the groups and gid only while CAP_SETGID is, and the uid last; setuid from
root to another uid clears the permitted, effective and ambient sets, but not the inheritable set,
which is cleared explicitly. no_new_privs then makes sure no exec gains anything back (setuid
binaries, file capabilities).

Python exposes setgroups/setgid/setuid but neither prctl nor capset, and the libraries that do
(python-prctl) need libcap headers to build; these four calls are a few lines of ctypes.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
from dataclasses import dataclass

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class DropFailed(OSError):
    pass


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    uid: int
    gid: int


def service_account(name: str) -> ServiceAccount:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise DropFailed(f"no user {name!r} to run as (wcp360.yml user): run `wcp360 install` first") from None
    return ServiceAccount(name, entry.pw_uid, entry.pw_gid)


def _prctl(option: int, arg: int = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise DropFailed(error, f"prctl({option}): {os.strerror(error)}")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return int(f.read())
    except OSError:
        return 40


def _clear_capability_sets() -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero: effective, permitted and inheritable empty
    if _libc.capset(ctypes.byref(header), data) != 0:
        error = ctypes.get_errno()
        raise DropFailed(error, f"capset: {os.strerror(error)}")


def drop_to(account: ServiceAccount) -> None:
    """Become `account` for good: no supplementary groups, its gid and uid, every capability set
    empty, no_new_privs. Raises DropFailed (the caller must not serve) if any step fails."""
    if os.geteuid() != 0:
        raise DropFailed("not running as root: nothing to drop")
    if account.uid == 0:
        raise DropFailed("refusing to 'drop' to uid 0")
    for capability in range(_last_capability() + 1):
        _prctl(PR_CAPBSET_DROP, capability)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    _clear_capability_sets()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Verify rather than trust: a kernel or library that ignored a step must not leave us root.
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3 or os.getgroups():
        raise DropFailed("the process still holds its old ids after dropping them")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise DropFailed("setuid(0) succeeded after the drop")


def shed_capabilities() -> None:
    """Started unprivileged but with capabilities (systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE
    for port 443): after binding, give every one of them up and set no_new_privs."""
    for capability in range(_last_capability() + 1):
        try:
            _prctl(PR_CAPBSET_DROP, capability)
        except DropFailed:
            break  # without CAP_SETPCAP the bounding set stays as systemd limited it; nothing is effective
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _clear_capability_sets()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
