"""Directory work beneath a root, never through a symlink.

Every path the agent touches is a validated name beneath a root from its own configuration, and
each step opens the next component relative to the previous one's descriptor with O_NOFOLLOW: a
symlink anywhere (planted in the root, or swapped in for a tenant's directory) is refused, not
followed. Removal is `shutil.rmtree` with `dir_fd`, which walks by descriptors and never follows
a link out of the tree.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_DIR = os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW


class Escape(OSError):
    """A path that would leave its root, or pass through a symlink."""


@contextmanager
def opened_root(root: Path, create_mode: int | None = None) -> Iterator[int]:
    """A descriptor of the absolute directory `root`, opened component by component without
    following a symlink; missing components are made (root-owned, `create_mode`) when asked."""
    if not root.is_absolute() or any(part in {".", ".."} for part in root.parts):
        raise Escape(f"{root}: not an absolute, normalised path")
    fd = os.open("/", _DIR)
    try:
        for part in root.parts[1:]:
            created = False
            if create_mode is not None:
                with suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                    created = True
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                raise Escape(f"{root}: {part} is not a directory reached without a symlink ({exc.strerror})") from None
            os.close(fd)
            fd = child
            if created:  # the mode asked for, whatever the process's umask (the agent's is 0177)
                os.fchmod(fd, create_mode)  # type: ignore[arg-type]
        yield fd
    finally:
        os.close(fd)


def _component(name: str) -> str:
    if not name or "/" in name or name in {".", ".."} or "\0" in name:
        raise Escape(f"{name!r} is not one path component")
    return name


def make_directory(parent_fd: int, name: str, uid: int, gid: int, mode: int, existing_ok: bool = False) -> int:
    """Create `name` in `parent_fd` (with `existing_ok`, or take the directory standing there,
    never a link), owned uid:gid with `mode`; its descriptor."""
    try:
        os.mkdir(_component(name), 0o700, dir_fd=parent_fd)
    except FileExistsError:
        if not existing_ok:
            raise
    try:
        fd = os.open(name, _DIR, dir_fd=parent_fd)
    except OSError as exc:
        raise Escape(f"{name}: not a directory ({exc.strerror})") from None
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def exists(parent_fd: int, name: str) -> bool:
    try:
        os.stat(_component(name), dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def is_directory(parent_fd: int, name: str) -> bool:
    """A real directory (a symlink to one is not)."""
    try:
        fd = os.open(_component(name), _DIR, dir_fd=parent_fd)
    except OSError:
        return False
    os.close(fd)
    return True


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove `name` and everything beneath it; a symlink is removed as a link, never followed."""
    _component(name)
    if not is_directory(parent_fd, name):
        if exists(parent_fd, name):
            os.unlink(name, dir_fd=parent_fd)  # whatever stands there instead of a directory, not its target
        return
    shutil.rmtree(name, dir_fd=parent_fd)


def chmod_entry(parent_fd: int, name: str, mode: int) -> None:
    fd = os.open(_component(name), _DIR, dir_fd=parent_fd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
