"""The filesystem's append-only attribute (`chattr +a`) on audit files, where it can be had.

With it, not even the file's owner can overwrite, truncate, rename or delete the file; only a
process with CAP_LINUX_IMMUTABLE can lift it. The server running unprivileged cannot set it, and
some filesystems do not support it: then the trail records that it runs without (and `doctor`
will report it). Python has no wrapper for these ioctls, hence this module.
"""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_APPEND_FL = 0x00000020


def _flags(fd: int) -> int:
    value: int = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
    return value


def set_append_only(path: Path, on: bool) -> bool:
    """Set or clear the attribute; False when the filesystem or our privileges do not allow it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return set_append_only_fd(fd, on)
    finally:
        os.close(fd)


def set_append_only_fd(fd: int, on: bool) -> bool:
    try:
        flags = _flags(fd)
        wanted = flags | FS_APPEND_FL if on else flags & ~FS_APPEND_FL
        if wanted != flags:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", wanted))
        return True
    except OSError:
        return False


def is_append_only(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return bool(_flags(fd) & FS_APPEND_FL)
    except OSError:
        return False
    finally:
        os.close(fd)
