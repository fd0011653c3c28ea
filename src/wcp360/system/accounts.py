"""Linux users, groups and processes, through the host's own tools.

`useradd`/`groupadd`/`usermod`/`userdel`/`groupdel` (Debian's `passwd` package) keep
/etc/passwd, /etc/group, /etc/shadow and their locks consistent, which hand-editing would not; they
are run with an argument list, never through a shell, and only with names that passed
`names.check_name`.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import subprocess
from pathlib import Path

NOLOGIN = "/usr/sbin/nologin"


class HostCommandFailed(RuntimeError):
    pass


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise HostCommandFailed(f"{argv[0]}: {reason[:200]}")


def free_id(low: int, high: int) -> int:
    """The lowest id in [low, high] that is neither a uid nor a gid (user and group share it)."""
    used = {entry.pw_uid for entry in pwd.getpwall()} | {entry.gr_gid for entry in grp.getgrall()}
    for candidate in range(low, high + 1):
        if candidate not in used:
            return candidate
    raise HostCommandFailed(f"no free id left in {low}-{high} (wcp360.yml tenants.uid_min/uid_max)")


def add_user(name: str, uid: int, home: Path) -> None:
    """A user and its own group with one id, no home made by useradd (the agent makes it), no
    login shell, and no password (useradd leaves it locked)."""
    _run("groupadd", "--gid", str(uid), name)
    try:
        _run(
            "useradd", "--uid", str(uid), "--gid", str(uid), "--no-create-home", "--home-dir", str(home),
            "--shell", NOLOGIN, "--comment", "WCP360 tenant", "--no-user-group", name,
        )  # fmt: skip
    except HostCommandFailed:
        remove_group(name)
        raise


def add_service_user(name: str, home: Path) -> None:
    """The panel's own account (`wcp360 install`): a system user and group, no login shell."""
    _run(
        "useradd", "--system", "--shell", NOLOGIN, "--home-dir", str(home), "--no-create-home",
        "--user-group", "--comment", "WCP360 panel", name,
    )  # fmt: skip


def expire(name: str) -> None:
    """Expired accounts are refused by every PAM service (su, ssh, cron, FTP) whatever else they hold."""
    _run("usermod", "--expiredate", "1", name)


def unexpire(name: str) -> None:
    _run("usermod", "--expiredate", "", name)


def remove_user(name: str) -> None:
    if _exists(pwd.getpwnam, name):
        _run("userdel", name)
    remove_group(name)


def remove_group(name: str) -> None:
    if _exists(grp.getgrnam, name):
        _run("groupdel", name)


def ids_of(name: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _exists(lookup: object, name: str) -> bool:
    try:
        lookup(name)  # type: ignore[operator]
    except KeyError:
        return False
    return True


def processes_of(uid: int) -> list[int]:
    """Processes whose real, effective or saved uid is `uid`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("State:") and line.split()[1] in {"Z", "X"}:
                        break  # dead already, waiting for its parent to reap it
                    if line.startswith("Uid:"):
                        if str(uid) in line.split()[1:4]:
                            found.append(int(entry.name))
                        break
        except OSError:
            continue  # gone meanwhile
    return found


def kill_all(uid: int) -> int:
    """Stop every process of `uid`, then kill them; repeated until none is left, so a process
    forking meanwhile does not escape (each round stops what the last one missed). Returns how many."""
    killed: set[int] = set()
    for _ in range(100):
        pids = [pid for pid in processes_of(uid) if pid != os.getpid()]
        if not pids:
            return len(killed)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        killed.update(pids)
        # Not reaped here: a killed process is a zombie until its own parent waits for it (which
        # `processes_of` skips), and reaping another's child would steal its exit status.
    raise HostCommandFailed(f"processes of uid {uid} kept appearing")
