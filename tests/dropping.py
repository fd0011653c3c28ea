"""Running `wcp360 serve` as root the way production does: it drops to a service user, which must
be able to reach its data directory and to run Python and WCP360's code.

The suite's own interpreter may live beneath /root (pyenv), which only root may enter, and a clean
clone sits in a 0700 temporary directory; so a served test uses Debian's interpreter (same version
and ABI) with the checkout's source and packages on PYTHONPATH, and the directories on the way get
the search bit (never read) for the test's length only."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
SITE_PACKAGES = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def serve_command() -> list[str]:
    """`python -m wcp360.cli`, with an interpreter the service user can run when the tests are root."""
    if os.geteuid() == 0:
        return [str(SYSTEM_PYTHON), "-m", "wcp360.cli"]
    return [sys.executable, "-m", "wcp360.cli"]


def serve_env() -> dict[str, str]:
    return {"PYTHONPATH": f"{SRC}:{SITE_PACKAGES}"} if os.geteuid() == 0 else {}


@contextmanager
def searchable(*paths: Path) -> Iterator[None]:
    """Every directory from / down to each of `paths` searchable by others, until the block ends."""
    changed = []
    for path in {p for target in (*paths, SRC, SITE_PACKAGES) for p in (target, *target.parents)}:
        if not path.is_dir():
            continue
        mode = path.stat().st_mode
        if not mode & 0o001:
            path.chmod(mode | 0o001)
            changed.append((path, mode))
    try:
        yield
    finally:
        for path, mode in changed:
            path.chmod(mode)


@contextmanager
def service_user() -> Iterator[str]:
    name = f"wtsvc{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name], check=True
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, capture_output=True)
