"""The jail's last step before the command (jail_exec.c): where the program is, and building it.

The agent compiles it once per version of its source, with the host's C compiler, into its own
state directory (root's, mode 0700) and hands it to each jail as an open descriptor: no tenant
can reach the file on the host, none can change
it (the jail runs it from `/proc/self/fd/N`, and it closes that descriptor before the command).
Statically linked: no dynamic loader or library is opened before Landlock holds.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("jail_exec.c")


class HelperUnavailable(RuntimeError):
    pass


@functools.cache
def _source_digest() -> str:
    """Read once per process: every jail start asks for the helper's path."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]


def helper_path(directory: Path) -> Path:
    return directory / f"wcp360-jail-exec-{_source_digest()}"


_building = threading.Lock()  # the agent's threads (supervised processes) may all start at once


def ensure_helper(directory: Path) -> Path:
    """The built program, building it first if this version has not been (about 0.3 s)."""
    target = helper_path(directory)
    if target.is_file():
        return target
    with _building:
        return target if target.is_file() else _build(directory, target)


def _build(directory: Path, target: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise HelperUnavailable("no C compiler to build the jail's helper (Debian package gcc)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    command = [compiler, "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", str(partial), str(SOURCE)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        first = (built.stderr.strip().splitlines() or ["no output"])[0]
        raise HelperUnavailable(f"building the jail's helper failed: {first[:300]}")
    os.chmod(partial, 0o755)  # noqa: S103 - a program every tenant uid runs (from a descriptor)
    os.replace(partial, target)
    return target
