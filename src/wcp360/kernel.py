"""What the running kernel offers that the sandboxes ask about, for every tier (the WebAssembly
workers, the root agent's jails, doctor)."""

from __future__ import annotations

import ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_LANDLOCK_CREATE_RULESET = 444
LANDLOCK_CREATE_RULESET_VERSION = 1


def landlock_abi() -> int:
    """The Landlock ABI version (0: none). 1 filesystem; 2 refer; 3 truncate; 4 TCP bind/connect;
    5 device ioctl; 6 abstract Unix sockets and signals scoped; 7 audit logging."""
    abi = _libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
    )
    return int(abi) if abi > 0 else 0
