"""The owned-resource rhythm, written once for every resource type.

List what the actor may see (`Policy.scope`), load one row and let the policy function decide on
it (a denial is audited; "not found" only when there is no such row), create (row -> view ->
audit), delete (the row and its shares -> audit), share. A service for a new resource type holds
one `Owned(db, policy, KIND)` and writes only what is its own: validation, quotas, side effects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz.policy import Policy, Resource
from wcp360.authz.principal import Principal
from wcp360.authz.resources import ResourceType, RowT
from wcp360.authz.sharing import Sharing
from wcp360.authz.views import ShareView
from wcp360.errors import NotFound
from wcp360.store.database import Database
from wcp360.store.models import Share
from wcp360.store.paging import page
from wcp360.store.scope import RowScope

V = TypeVar("V")
Details = Mapping[str, Any] | None


class Owned(Generic[RowT]):
    def __init__(self, db: Database, policy: Policy, kind: ResourceType[RowT]) -> None:
        self.db = db
        self.policy = policy
        self.kind = kind
        self.sharing = Sharing(db, policy, kind)
        table = kind.model.__table__
        # The row and its shares in one statement, built once: this lookup is on every execution's
        # path (a module), and building the expression cost more than running it.
        lookup = select(table)
        if kind.shareable:
            lookup = select(table, Share.grantee.label("share_grantee"), Share.action.label("share_action")).outerjoin(
                Share, and_(Share.resource_type == kind.name, Share.resource_id == kind.id_column)
            )
        self._lookup = lookup.where(kind.id_column == bindparam("row_id"))
        self._attributes = {
            column.name: attribute.key
            for attribute in kind.model.__mapper__.column_attrs
            for column in attribute.columns
        }

    # -- reading ----------------------------------------------------------------------------

    def page(
        self,
        actor: Principal,
        view: Callable[[RowT], V],
        *filters: Any,
        order_by: Any,
        limit: int = 50,
        offset: int = 0,
        action: str = "read",
    ) -> tuple[list[V], int]:
        """One page of what the actor may see, with `filters` (column expressions) applied."""
        scope = self.policy.scope(actor, self.kind, action)
        query = scope.where(select(self.kind.model))
        for condition in filters:
            query = query.where(condition)
        with self.db.transaction(scope.rows, readonly=True) as s:
            return page(s, query, order_by, limit, offset, view)

    def authorised(
        self, actor: Principal, row_id: uuid.UUID, permission: str | tuple[str, ...], *, shared: bool = True
    ) -> RowT:
        """The row, once the policy function allowed `permission` on it. `shared=False` decides as
        if nothing were shared: acts only the owner (or an administrator) may do."""
        # Read whoever owns it, for the policy function to decide on (and audit a denial); RLS
        # stays the second fence for listings and writes. Nothing of the row leaves here unless allowed.
        rows = self.db.read_one_statement(self._lookup, {"row_id": row_id}, RowScope.decided(actor.user_id))
        if not rows:
            raise NotFound(f"no such {self.kind.audit_name}")
        attributes = self._attributes
        row = self.kind.model(**{attributes[k]: v for k, v in rows[0]._mapping.items() if k in attributes})
        shares: frozenset[tuple[str, str]] = frozenset()
        if shared and self.kind.shareable:
            shares = frozenset((r.share_grantee, r.share_action) for r in rows if r.share_grantee is not None)
        self.policy.require(actor, permission, self.resource(row, shares))
        return row

    def resource(self, row: RowT, shares: frozenset[tuple[str, str]] = frozenset()) -> Resource:
        return Resource(
            self.kind.name,
            id=str(self.kind.id_of(row)),
            owner_id=self.kind.owner_of(row),
            shared_with=shares,
        )

    # -- sharing (the owner's act: the row is reached as if nothing were shared) -----------------

    def share(
        self, actor: Principal, row_id: uuid.UUID, action: str, user: str | None = None, role: str | None = None
    ) -> ShareView:
        return self.sharing.share(actor, self._as_owner(actor, row_id), action, user, role)

    def shares(self, actor: Principal, row_id: uuid.UUID) -> list[ShareView]:
        return self.sharing.list_shares(actor, self._as_owner(actor, row_id))

    def unshare(self, actor: Principal, row_id: uuid.UUID, share_id: uuid.UUID) -> None:
        self.sharing.unshare(actor, self._as_owner(actor, row_id), share_id)

    def _as_owner(self, actor: Principal, row_id: uuid.UUID) -> Resource:
        # Read access (a grantee's too) finds the row; the resource handed on carries no shares, so
        # only its owner (or an administrator) passes Sharing's own checks.
        return self.resource(self.authorised(actor, row_id, self.kind.permission("read")))

    # -- changing ---------------------------------------------------------------------------

    def create(
        self,
        actor: Principal,
        make: Callable[[OrmSession], RowT],
        view: Callable[[RowT], V],
        details: Callable[[RowT], Details] = lambda _row: None,
        event: str | None = None,
    ) -> V:
        """Store the row `make` builds (it may check quotas in the same transaction), then record
        `<audit_name>_create` (or `event`) once it is committed. The caller checked the permission."""
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            row = make(s)
            s.add(row)
            s.flush()
            result = view(row)
            recorded = details(row)
        audit.record(
            event or f"{self.kind.audit_name}_create",
            actor=actor,
            resource_type=self.kind.audit_name,
            resource_id=str(self.kind.id_of(row)),
            details=dict(recorded) if recorded is not None else None,
        )
        return result

    def delete(
        self,
        actor: Principal,
        row_id: uuid.UUID,
        permission: str | tuple[str, ...],
        details: Callable[[RowT], Details] = lambda _row: None,
    ) -> RowT:
        """Delete the row and every share of it (owner's act: shares do not count), then record
        `<audit_name>_delete`. Returns the row as it was, for the caller's own clean-up."""
        row = self.authorised(actor, row_id, permission, shared=False)
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
            s.execute(delete(self.kind.model).where(self.kind.id_column == row_id))
            if self.kind.shareable:
                s.execute(delete(Share).where(Share.resource_type == self.kind.name, Share.resource_id == row_id))
        recorded = details(row)
        audit.record(
            f"{self.kind.audit_name}_delete",
            actor=actor,
            resource_type=self.kind.audit_name,
            resource_id=str(row_id),
            details=dict(recorded) if recorded is not None else None,
        )
        return row
