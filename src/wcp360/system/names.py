"""Tenant names: valid Linux user and group names, never a reserved or existing one.

A tenant's name becomes its Linux user, its group and its home's last component, so it must be
all three at once: lowercase letter first, then lowercase letters, digits, `_` or `-`, at most 32
characters (useradd's limit; no trailing `$`, which marks machine accounts). Nothing in it can
reach a shell, a path separator or a dotfile.
"""

from __future__ import annotations

import grp
import pwd
import re
from collections.abc import Iterable

TENANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class NameRefused(ValueError):
    pass


def check_name(name: str, reserved: Iterable[str]) -> str:
    """`name` if a new tenant may take it, else NameRefused saying why."""
    if not TENANT_NAME.fullmatch(name):
        raise NameRefused(
            "a tenant name is 1-32 characters: a lowercase letter, then lowercase letters, digits, '_' or '-'"
        )
    if name in set(reserved):
        raise NameRefused(f"{name!r} is reserved (wcp360.yml tenants.reserved_names)")
    return name


def system_user_exists(name: str) -> bool:
    """A user or group of that name already on the host (a tenant never takes over an account)."""
    for lookup in (pwd.getpwnam, grp.getgrnam):
        try:
            lookup(name)
        except KeyError:
            continue
        return True
    return False
