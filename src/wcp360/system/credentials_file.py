"""A database's credentials, written for the tenant's own applications to read:
`<home>/.wcp360/databases/<engine>-<name>.env` (0600, the tenant's), replaced whole at each
create and rotation, so an application that reads it keeps working when the password rotates.

The agent writes as root into the tenant's home, so it never follows the tenant's links: each
directory is reached from the home root with O_NOFOLLOW (beneath.py) and made if missing, the
file is written under a fresh name (O_EXCL) and renamed over the old one within the directory's
descriptor (a rename replaces a planted symlink, never its target).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from wcp360.system import beneath

_DIR = os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _directory(parent: int, name: str, uid: int, gid: int) -> int:
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except FileNotFoundError:
        return beneath.make_directory(parent, name, uid, gid, 0o700)
    except OSError:  # a symlink or a file under the name: the tenant's own doing; it goes
        beneath.remove_tree(parent, name)
        return beneath.make_directory(parent, name, uid, gid, 0o700)


def write_credentials(home_root: Path, tenant: str, uid: int, gid: int, file: str, text: str) -> Path:
    with beneath.opened_root(home_root) as root:
        home = os.open(tenant, _DIR, dir_fd=root)
    opened = [home]
    try:
        for name in (".wcp360", "databases"):
            opened.append(_directory(opened[-1], name, uid, gid))
        directory = opened[-1]
        partial = f".{file}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial, dir_fd=directory)
        fd = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory
        )
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(partial, file, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        for fd in reversed(opened):
            os.close(fd)
    return home_root / tenant / ".wcp360" / "databases" / file


def credentials_text(engine: str, database: str, user: str, password: str, location: str) -> str:
    """Shell- and dotenv-readable; the values hold no quote, space or `$` (validated names, URL-safe passwords)."""
    return f"DB_ENGINE={engine}\nDB_NAME={database}\nDB_USER={user}\nDB_PASSWORD={password}\nDB_SOCKET={location}\n"
