"""The one policy decision function of WCP360.

Every permission check (API, CLI, panel, workers) calls `decide` or `require`. A permission is
`resource:action`; roles grant patterns where the action may be `*`. Resources whose rbac rule has
`ownership` are reachable only by their owner, by principals holding `system:any_owner`, or (when
the rule allows sharing) by those they were shared with. Deny by default: an unknown role grants
nothing, an unknown resource type is owned and unshareable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from wcp360 import audit, metrics
from wcp360.authz.principal import Principal
from wcp360.authz.resources import ResourceType
from wcp360.authz.scope import Scope, grantee_keys
from wcp360.config.rbac import RbacFile, ResourceRule
from wcp360.errors import Forbidden
from wcp360.store.scope import RowScope

# Granted to every signed-in account for acting on itself; API tokens only keep those in their scope.
SELF_PERMISSIONS = ("self:read", "self:update", "self:2fa", "self:api_tokens", "self:sessions")
# All a session may do until the second factor its role requires is set up.
MFA_PENDING_PERMISSIONS = ("self:read", "self:2fa", "self:sessions")
ANY_OWNER = "system:any_owner"
_UNLISTED = ResourceRule(ownership=True, sharing=False)


@dataclass(frozen=True)
class Resource:
    type: str
    id: str | None = None
    owner_id: uuid.UUID | None = None
    # (user id or "role:<name>", action) pairs the owner shared this resource with.
    shared_with: frozenset[tuple[str, str]] = frozenset()
    # Permissions held by the resource itself (a user account): the actor must hold all of them,
    # so nobody manages, or hands out, more power than they have.
    grants: frozenset[str] = frozenset()
    # What the target is: a description for the denial event, e.g. "admin".
    label: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    permission: str
    missing: tuple[str, ...] = field(default=())


def matches(pattern: str, permission: str) -> bool:
    resource, _, action = pattern.partition(":")
    wanted_resource, _, wanted_action = permission.partition(":")
    return resource == wanted_resource and (action == "*" or action == wanted_action)


def covers(patterns: Iterable[str], permission: str) -> bool:
    """Whether `patterns` grant `permission`; a wildcard permission needs a wildcard grant."""
    return any(matches(p, permission) for p in patterns)


# Permission parts the code asks for; with the config's own, they bound the metric's label values.
_KNOWN_RESOURCES = frozenset(
    {"self", "system", "users", "modules", "snapshots", "scheduler", "audit", "bans", "metrics"}
)
_KNOWN_ACTIONS = frozenset(
    {"*", "read", "create", "update", "delete", "execute", "release", "restore", "2fa", "api_tokens", "sessions"}
)


class Policy:
    def __init__(self, rbac: RbacFile) -> None:
        self.rbac = rbac
        granted = [p.partition(":") for role in rbac.roles.values() for p in role.permissions]
        self._label_resources = _KNOWN_RESOURCES | set(rbac.resources) | {r for r, _, _ in granted}
        self._label_actions = _KNOWN_ACTIONS | {a for _, _, a in granted}

    def metric_label(self, permission: str) -> str:
        """`permission` when it is made of known parts, else "other": a caller chooses the requested
        permission (an API token's scopes), and free-form label values would grow /metrics without end."""
        resource, _, action = permission.partition(":")
        return permission if resource in self._label_resources and action in self._label_actions else "other"

    def role_permissions(self, roles: Iterable[str]) -> frozenset[str]:
        granted: set[str] = set()
        for role in roles:
            definition = self.rbac.roles.get(role)
            if definition is not None:
                granted.update(definition.permissions)
        return frozenset(granted)

    def effective(self, principal: Principal) -> frozenset[str]:
        """The patterns a principal holds right now, after token scope and 2FA state."""
        return _effective(self, principal.roles, principal.scopes, principal.mfa_pending)

    def decide(
        self, principal: Principal, permission: str | tuple[str, ...], resource: Resource | None = None
    ) -> Decision:
        """Allowed when the principal holds `permission` (or any one of several alternatives)."""
        if isinstance(permission, tuple):
            decisions = [self.decide(principal, p, resource) for p in permission]
            return next((d for d in decisions if d.allowed), decisions[0])
        held = self.effective(principal)
        if not covers(held, permission):
            reason = "second factor required" if principal.mfa_pending else "permission not granted"
            return Decision(False, reason, permission)
        if resource is not None:
            missing = tuple(sorted(g for g in resource.grants if not covers(held, g)))
            if missing:
                return Decision(False, "target holds permissions the actor lacks", permission, missing)
            if not self._may_reach(principal, held, permission, resource):
                return Decision(False, "not the owner", permission)
        return Decision(True, "granted", permission)

    def require(
        self, principal: Principal, permission: str | tuple[str, ...], resource: Resource | None = None
    ) -> None:
        """Raise Forbidden (after recording the denial) unless `decide` allows."""
        decision = self.decide(principal, permission, resource)
        if decision.allowed:
            return
        permission = decision.permission
        metrics.AUTHORIZATION_DENIALS.labels(permission=self.metric_label(permission)).inc()
        audit.record(
            "permission_denied",
            actor=principal,
            outcome="denied",
            resource_type=resource.type if resource else permission.partition(":")[0],
            resource_id=resource.id if resource else None,
            details={
                "permission": permission,
                "reason": decision.reason,
                "missing": list(decision.missing),
                "target_resource": resource.label if resource and resource.label else None,
            },
        )
        raise Forbidden(f"{decision.reason}: {permission}")

    def scope(self, principal: Principal, kind: ResourceType[Any], action: str = "read") -> Scope:
        """Who may see what of `kind` for `action`, once the principal holds the permission (a
        denial is audited): every owner's rows with `system:any_owner` (or for an unowned type),
        else the principal's own and, where rbac turns sharing on, those shared with it."""
        self.require(principal, kind.permission(action))
        rule = self.rbac.resources.get(kind.name, _UNLISTED)
        grantees = grantee_keys(principal) if rule.sharing and kind.shareable else ()
        if not rule.ownership or covers(self.effective(principal), ANY_OWNER):
            return Scope(kind, RowScope(principal.user_id, all_owners=True, grantees=grantees), owner=None)
        if principal.user_id is None:
            raise Forbidden(f"no owner to list {kind.name} for")
        return Scope(kind, RowScope(principal.user_id, grantees=grantees), owner=principal.user_id)

    def grants_of_roles(self, roles: Iterable[str]) -> frozenset[str]:
        return self.role_permissions(roles) | frozenset(SELF_PERMISSIONS)

    def _may_reach(self, principal: Principal, held: frozenset[str], permission: str, resource: Resource) -> bool:
        rule = self.rbac.resources.get(resource.type, _UNLISTED)
        if not rule.ownership or (resource.owner_id is None and resource.id is None):
            return True
        if covers(held, ANY_OWNER):
            return True
        if principal.user_id is not None and resource.owner_id == principal.user_id:
            return True
        if rule.sharing:
            action = permission.partition(":")[2]
            keys = {str(principal.user_id)} | {f"role:{r}" for r in principal.roles}
            return any((key, action) in resource.shared_with for key in keys)
        return False


@lru_cache(maxsize=4096)
def _effective(
    policy: Policy, roles: tuple[str, ...], scopes: tuple[str, ...] | None, mfa_pending: bool
) -> frozenset[str]:
    granted = policy.role_permissions(roles) | frozenset(SELF_PERMISSIONS)
    if mfa_pending:
        granted = frozenset(p for p in granted if p in MFA_PENDING_PERMISSIONS)
    if scopes is not None:
        # A token keeps a granted pattern only where its scope covers it, and a scope pattern only
        # where a grant covers it: the result never exceeds either side.
        granted = frozenset({p for p in granted if covers(scopes, p)} | {s for s in scopes if covers(granted, s)})
    return granted
