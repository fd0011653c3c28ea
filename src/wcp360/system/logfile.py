"""A supervised process's output in the tenant's `logs/`, written by root, rotated by size.

The agent writes here as root into a directory its tenant controls, so every step assumes the
tenant is hostile: `logs/` is reached from the home root without following a symlink
(beneath.py); the log is opened with O_NOFOLLOW and kept only if it is a regular file the tenant
owns with one link (a hard link to /etc/shadow planted as `app.log` would otherwise be appended
to, or chowned); anything else under the name is unlinked (the name, never a target) and the file
made afresh with O_EXCL. Rotation renames within the directory's descriptor (rename never
follows a link) and the oldest is unlinked by name.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from wcp360.system import beneath

_OPEN = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class LogFile:
    def __init__(self, home_root: Path, tenant: str, name: str, uid: int, gid: int, max_size: int, keep: int) -> None:
        self.home_root, self.tenant, self.name = home_root, tenant, f"{name}.log"
        self.uid, self.gid = uid, gid
        self.max_size, self.keep = max_size, keep
        self._fd: int | None = None
        self._size = 0
        self.dropped = 0  # bytes that could not be written (the tenant broke its logs/)

    def write(self, data: bytes) -> None:
        """Append `data`; no file grows past max_size: a piece that would is cut at its last
        newline that fits (or at the size, for a line longer than a whole file), then rotated."""
        try:
            if self._fd is None:
                self._reopen(rotate=False)
            while data:
                room = self.max_size - self._size
                if room <= 0:
                    self._reopen(rotate=True)
                    continue
                piece = data
                if len(data) > room:
                    piece = data[:room]
                    cut = piece.rfind(b"\n")
                    if cut >= 0:
                        piece = piece[: cut + 1]
                assert self._fd is not None  # _reopen opened it or raised
                written = os.write(self._fd, piece)
                self._size += written
                data = data[written:]
                if data and self._size < self.max_size:
                    self._size = self.max_size  # cut at a newline: the rest starts the next file
        except OSError:
            self.dropped += len(data)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _reopen(self, rotate: bool) -> None:
        self.close()
        with beneath.opened_root(self.home_root) as root:
            home = os.open(self.tenant, os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            try:
                logs = os.open("logs", os.O_DIRECTORY | os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=home)
            finally:
                os.close(home)
        try:
            if rotate:
                self._rotate(logs)
            self._fd, self._size = self._open_owned(logs)
        finally:
            os.close(logs)

    def _rotate(self, logs: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.name}.{self.keep}", dir_fd=logs)
        for index in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.name}.{index}", f"{self.name}.{index + 1}", src_dir_fd=logs, dst_dir_fd=logs)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.name, f"{self.name}.1", src_dir_fd=logs, dst_dir_fd=logs)

    def _open_owned(self, logs: int) -> tuple[int, int]:
        for _ in range(3):  # a tenant racing us gets three tries of its name, then the log waits
            try:
                fd = os.open(self.name, _OPEN, dir_fd=logs)
            except FileNotFoundError:
                fd = -1
            except OSError:  # a symlink (ELOOP), a directory, a FIFO: not a log; the name goes
                self._unlink_name(logs)
                continue
            if fd >= 0:
                info = os.fstat(fd)
                if stat.S_ISREG(info.st_mode) and info.st_uid == self.uid and info.st_nlink == 1:
                    return fd, info.st_size
                os.close(fd)
                self._unlink_name(logs)
                continue
            try:
                fd = os.open(self.name, _OPEN | os.O_CREAT | os.O_EXCL, 0o640, dir_fd=logs)
            except FileExistsError:
                continue
            os.fchown(fd, self.uid, self.gid)
            os.fchmod(fd, 0o640)  # whatever the agent's umask: the tenant reads its logs
            return fd, 0
        raise OSError(f"logs/{self.name} keeps being replaced")

    def _unlink_name(self, logs: int) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            os.unlink(self.name, dir_fd=logs)
