"""Sharing an owned resource (a module or a snapshot) with a user or a role, for one action.

Only the owner (or a principal holding `system:any_owner`) shares, and only an action they hold
themselves: sharing never hands out more than the sharer has. The policy function reads the shares
as `Resource.shared_with`; on PostgreSQL, RLS lets grantees SELECT the shared rows and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz import Policy, Principal, Resource
from wcp360.errors import Conflict, InvalidInput, NotFound
from wcp360.store.database import Database
from wcp360.store.models import Share, User
from wcp360.workloads.views import ShareView

# What may be shared, per resource type (rbac `sharing: true` decides whether at all).
SHAREABLE_ACTIONS = {"modules": ("read", "execute"), "snapshots": ("read", "restore")}


def grantee_keys(actor: Principal) -> tuple[str, ...]:
    """The keys a share may name to reach this principal: its user id and its roles."""
    keys = [f"role:{role}" for role in actor.roles]
    if actor.user_id is not None:
        keys.insert(0, str(actor.user_id))
    return tuple(keys)


def owned_or_shared(
    query: Select[Any],
    owner: Any,
    resource_id: Any,
    resource_type: str,
    owner_id: uuid.UUID,
    keys: Sequence[str],
) -> Select[Any]:
    """Listings: the rows `owner_id` owns and those shared with any of `keys` (for any action)."""
    shared = select(Share.resource_id).where(Share.resource_type == resource_type, Share.grantee.in_(keys))
    return query.where(or_(owner == owner_id, resource_id.in_(shared)))


def shared_with(s: OrmSession, resource_type: str, resource_id: uuid.UUID) -> frozenset[tuple[str, str]]:
    rows = s.execute(
        select(Share.grantee, Share.action).where(
            Share.resource_type == resource_type, Share.resource_id == resource_id
        )
    ).all()
    return frozenset((grantee, action) for grantee, action in rows)


def share_view(share: Share) -> ShareView:
    # A user share shows the name the sharer gave, never the account's id: the answer must look the
    # same whether or not an account of that name exists.
    role = share.grantee.removeprefix("role:") if share.grantee.startswith("role:") else None
    return ShareView(
        id=str(share.id),
        resource_type=share.resource_type,
        resource_id=str(share.resource_id),
        grantee=share.grantee if role else f"user:{share.grantee_label or share.grantee}",
        user=None if role else share.grantee_label or share.grantee,
        role=role,
        action=share.action,
        created_at=share.created_at.isoformat(),
    )


class Sharing:
    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy

    def share(
        self,
        actor: Principal,
        resource: Resource,
        action: str,
        user: str | None = None,
        role: str | None = None,
    ) -> ShareView:
        rule = self.policy.rbac.resources.get(resource.type)
        if rule is None or not rule.sharing:
            raise InvalidInput(f"{resource.type} cannot be shared")
        if action not in SHAREABLE_ACTIONS.get(resource.type, ()):
            raise InvalidInput(f"action must be one of {', '.join(SHAREABLE_ACTIONS[resource.type])}")
        if (user is None) == (role is None):
            raise InvalidInput("share with exactly one of `user` (a username or id) or `role`")
        # The sharer must reach the resource as its owner (shares of shares are not a thing:
        # `resource` carries no shared_with here) and hold the action being shared.
        self.policy.require(actor, f"{resource.type}:{action}", resource)
        assert resource.id is not None and resource.owner_id is not None
        with self.db.transaction(actor.user_id, all_owners=True) as s:
            label: str | None = None
            if role is not None:
                if role not in self.policy.rbac.roles:
                    raise InvalidInput(f"no such role: {role}")
                grantee = f"role:{role}"
            else:
                label = (user or "").strip().lower()[:128]
                if not label:
                    raise InvalidInput("name the user to share with")
                found = self._find_user(s, label)
                if found == resource.owner_id:
                    raise InvalidInput("the owner already has access")
                # A name no account has is stored as a share that reaches nobody, answered exactly
                # like a real one: sharing must not tell who has an account (username enumeration).
                grantee = str(found) if found is not None else f"nobody:{uuid.uuid4()}"
            exists = s.scalar(
                select(Share.id).where(
                    Share.resource_type == resource.type,
                    Share.resource_id == uuid.UUID(resource.id),
                    Share.action == action,
                    or_(Share.grantee == grantee, Share.grantee_label == label) if label else Share.grantee == grantee,
                )
            )
            if exists is not None:
                raise Conflict("already shared")
            share = Share(
                resource_type=resource.type,
                resource_id=uuid.UUID(resource.id),
                owner_id=resource.owner_id,
                grantee=grantee,
                action=action,
                grantee_label=label,
            )
            s.add(share)
            s.flush()
            view = share_view(share)
        audit.record(
            "resource_share",
            actor=actor,
            resource_type=resource.type,
            resource_id=resource.id,
            # The trail (read by administrators) keeps the real grantee.
            details={"grantee": grantee, "action": action},
        )
        return view

    def unshare(self, actor: Principal, resource: Resource, share_id: uuid.UUID) -> None:
        with self.db.transaction(actor.user_id, all_owners=True) as s:
            share = s.get(Share, share_id)
            if share is None or str(share.resource_id) != resource.id:
                raise NotFound("no such share")
            # Whoever could have made this share (the owner, holding the action) may take it back.
            self.policy.require(actor, f"{resource.type}:{share.action}", resource)
            details = {"grantee": share.grantee, "action": share.action}
            s.execute(delete(Share).where(Share.id == share_id))
        audit.record(
            "resource_unshare", actor=actor, resource_type=resource.type, resource_id=resource.id, details=details
        )

    def list_shares(self, actor: Principal, resource: Resource) -> list[ShareView]:
        """Who the owner shared with; grantees do not see each other."""
        self.policy.require(actor, f"{resource.type}:read", resource)
        assert resource.id is not None
        with self.db.transaction(actor.user_id, all_owners=True) as s:
            rows = s.scalars(
                select(Share)
                .where(Share.resource_type == resource.type, Share.resource_id == uuid.UUID(resource.id))
                .order_by(Share.created_at)
            ).all()
            return [share_view(row) for row in rows]

    @staticmethod
    def _find_user(s: OrmSession, user: str) -> uuid.UUID | None:
        try:
            return s.scalar(select(User.id).where(User.id == uuid.UUID(user)))
        except ValueError:
            return s.scalar(select(User.id).where(User.username == user))
