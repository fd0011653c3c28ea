"""Sharing an owned resource with a user or a role, for one action; one implementation for every
resource type whose declaration (authz/resources.py) names shareable actions.

Only the owner (or a principal holding `system:any_owner`) shares, and only an action they hold
themselves: sharing never hands out more than the sharer has. The policy function reads the shares
as `Resource.shared_with`; on PostgreSQL, RLS lets grantees SELECT the shared rows and nothing else.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz.policy import Policy, Resource
from wcp360.authz.principal import Principal
from wcp360.authz.resources import ResourceType
from wcp360.authz.views import ShareView
from wcp360.errors import Conflict, InvalidInput, NotFound
from wcp360.store.database import Database
from wcp360.store.models import Share, User
from wcp360.store.scope import RowScope


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
    def __init__(self, db: Database, policy: Policy, kind: ResourceType[Any]) -> None:
        self.db = db
        self.policy = policy
        self.kind = kind

    def share(
        self,
        actor: Principal,
        resource: Resource,
        action: str,
        user: str | None = None,
        role: str | None = None,
    ) -> ShareView:
        assert resource.type == self.kind.name
        rule = self.policy.rbac.resources.get(resource.type)
        if rule is None or not rule.sharing or not self.kind.shareable:
            raise InvalidInput(f"{resource.type} cannot be shared")
        if action not in self.kind.shareable:
            raise InvalidInput(f"action must be one of {', '.join(self.kind.shareable)}")
        if (user is None) == (role is None):
            raise InvalidInput("share with exactly one of `user` (a username or id) or `role`")
        # The sharer must reach the resource as its owner (shares of shares are not a thing:
        # `resource` carries no shared_with here) and hold the action being shared.
        self.policy.require(actor, f"{resource.type}:{action}", resource)
        assert resource.id is not None and resource.owner_id is not None
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
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
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
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
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
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
