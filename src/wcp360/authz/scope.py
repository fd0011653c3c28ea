"""What one actor may see of one resource type: the answer of `Policy.scope`.

One value carries both fences: the filter a listing's query gets (the owner's rows, and rows shared
with the actor's user id or roles) and the row scope its transaction runs in (the settings
PostgreSQL's row-level security reads). Services take both from here, never build them by hand.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select

from wcp360.authz.principal import Principal
from wcp360.authz.resources import ResourceType
from wcp360.store.models import Share
from wcp360.store.scope import RowScope


def grantee_keys(actor: Principal) -> tuple[str, ...]:
    """The keys a share may name to reach this principal: its user id and its roles."""
    keys = [f"role:{role}" for role in actor.roles]
    if actor.user_id is not None:
        keys.insert(0, str(actor.user_id))
    return tuple(keys)


@dataclass(frozen=True)
class Scope:
    kind: ResourceType[Any]
    rows: RowScope  # for `db.transaction(scope.rows)`
    owner: uuid.UUID | None  # None: every owner's rows are visible

    def where(self, query: Select[Any]) -> Select[Any]:
        """`query` cut to what the actor may see: its own rows and those shared with it (any action)."""
        if self.owner is None:
            return query
        owned = self.kind.owned_by(self.owner)
        if not self.rows.grantees:
            return query.where(owned)
        shared = select(Share.resource_id).where(
            Share.resource_type == self.kind.name, Share.grantee.in_(self.rows.grantees)
        )
        return query.where(or_(owned, self.kind.id_column.in_(shared)))
