"""`rbac.yml`: roles with wildcard permissions, and per-resource ownership/sharing rules (seed 003)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from wcp360.config.base import Section

_PERMISSION = re.compile(r"^[a-z][a-z0-9_-]*:(\*|[a-z][a-z0-9_-]*)$")


def _check_permission(value: str) -> str:
    if not _PERMISSION.match(value):
        raise ValueError(f"invalid permission {value!r}: expected 'resource:action' or 'resource:*'")
    return value


def is_permission(value: str) -> bool:
    return bool(_PERMISSION.match(value))


Permission = Annotated[str, AfterValidator(_check_permission)]


class Role(Section):
    description: str = ""
    permissions: list[Permission] = []


class ResourceRule(Section):
    ownership: bool = True
    sharing: bool = False


TENANT_PERMISSIONS = [
    "modules:read",
    "modules:create",
    "modules:execute",
    "modules:delete",
    "scheduler:read",
    "scheduler:create",
    "snapshots:read",
    "snapshots:create",
    "snapshots:restore",
]

# The seed's four roles, plus the two a hosting panel needs. Used only when rbac.yml is absent:
# a file given by the operator replaces this set whole, so deleting a role there really removes it.
DEFAULT_ROLES: dict[str, Role] = {
    "admin": Role(
        description="Host administrator",
        # The seed's admin permissions, plus tenants:* so the admin can manage resellers.
        permissions=["modules:*", "users:*", "system:*", "scheduler:*", "metrics:*", "snapshots:*", "tenants:*"],
    ),
    "developer": Role(
        permissions=[
            "modules:read",
            "modules:create",
            "modules:execute",
            "scheduler:read",
            "scheduler:create",
            "metrics:read",
            "snapshots:read",
        ]
    ),
    "viewer": Role(permissions=["modules:read", "metrics:read", "scheduler:read"]),
    "operator": Role(
        permissions=[
            "modules:read",
            "modules:execute",
            "scheduler:*",
            "metrics:read",
            "snapshots:create",
            "snapshots:restore",
        ]
    ),
    "reseller": Role(
        description="Creates and manages the tenant accounts it owns",
        # Nobody hands out more than they hold, so a reseller holds what a tenant gets.
        permissions=["users:read", "users:create", "users:update", "tenants:*", "metrics:read", *TENANT_PERMISSIONS],
    ),
    "tenant": Role(
        description="A hosting customer: its own sites, databases and workloads",
        permissions=TENANT_PERMISSIONS,
    ),
}

DEFAULT_RESOURCES: dict[str, ResourceRule] = {
    "tenants": ResourceRule(ownership=True, sharing=False),
    "modules": ResourceRule(ownership=True, sharing=True),
    "tasks": ResourceRule(ownership=True, sharing=False),
    "snapshots": ResourceRule(ownership=True, sharing=True),
    "users": ResourceRule(ownership=True, sharing=False),
}


class RbacFile(Section):
    roles: dict[str, Role] = DEFAULT_ROLES
    # A resource type not listed here is treated as owned and unshareable (deny by default).
    resources: dict[str, ResourceRule] = DEFAULT_RESOURCES
