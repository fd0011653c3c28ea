"""Tenants on the panel side: the owned row, the policy, the audit trail; the host side (the
Linux user and group, the home, suspension) is the system agent's, through its one client.

Each change asks the agent first and stores the row after: an agent that refuses leaves the
database as it was, and a row that cannot be stored after the agent acted is undone on the host
(a tenant made is deleted again; a suspension is resumed again).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as OrmSession

from wcp360 import audit
from wcp360.authz import Policy, Principal, Resource
from wcp360.authz.owned import Owned
from wcp360.authz.policy import ANY_OWNER
from wcp360.authz.resources import TENANTS, USERS
from wcp360.config.server import TenantLimits, TenantsConfig
from wcp360.errors import AgentUnreachable, Conflict, HostFailed, InvalidInput, NotFound
from wcp360.hosting.views import LimitsView, TenantView
from wcp360.store.database import Database
from wcp360.store.models import Tenant, User
from wcp360.store.scope import NOBODY, SYSTEM, RowScope
from wcp360.store.types import utcnow
from wcp360.system.client import AgentClient, AgentRefused, AgentUnavailable
from wcp360.system.names import NameRefused, check_name
from wcp360.system.protocol import (
    TenantCreate,
    TenantDelete,
    TenantHost,
    TenantResume,
    TenantSetLimits,
    TenantSuspend,
)

_REFUSALS: dict[str, Callable[[str], Exception]] = {
    "invalid": InvalidInput,
    "conflict": Conflict,
    "not_found": NotFound,
    "infected": InvalidInput,  # an upload the malware scanner refused
}


def tenant_view(tenant: Tenant) -> TenantView:
    return TenantView(
        id=str(tenant.id),
        name=tenant.name,
        owner_id=str(tenant.owner_id),
        status=tenant.status,
        uid=tenant.uid,
        gid=tenant.gid,
        home=tenant.home,
        limits=LimitsView.model_validate(tenant.limits),
        degraded=[str(item) for item in tenant.degraded],
        created_at=tenant.created_at.isoformat(),
        suspended_at=tenant.suspended_at.isoformat() if tenant.suspended_at else None,
    )


@contextmanager
def agent_errors() -> Iterator[None]:
    try:
        yield
    except AgentRefused as refused:
        raise _REFUSALS.get(refused.code, HostFailed)(str(refused)) from None
    except AgentUnavailable as exc:
        raise AgentUnreachable(str(exc)) from None


class TenantService:
    def __init__(self, db: Database, policy: Policy, agent: AgentClient, config: TenantsConfig) -> None:
        self.db = db
        self.policy = policy
        self.agent = agent
        self.config = config
        self.owned = Owned(db, policy, TENANTS)

    # -- reading ------------------------------------------------------------------------------

    def list_tenants(
        self, actor: Principal, limit: int = 50, offset: int = 0, status: str | None = None
    ) -> tuple[list[TenantView], int]:
        filters = [Tenant.status == status] if status is not None else []
        return self.owned.page(actor, tenant_view, *filters, order_by=Tenant.name, limit=limit, offset=offset)

    def get(self, actor: Principal, tenant_id: uuid.UUID) -> TenantView:
        return tenant_view(self.owned.authorised(actor, tenant_id, "tenants:read"))

    def find_id(self, actor: Principal, name: str) -> uuid.UUID:
        """The id of the tenant called `name`, if the actor may read it (the CLI names tenants)."""
        scope = self.policy.scope(actor, TENANTS, "read")
        with self.db.transaction(scope.rows, readonly=True) as s:
            found: uuid.UUID | None = s.scalar(scope.where(select(Tenant.id)).where(Tenant.name == name))
        if found is None:
            raise NotFound(f"no tenant named {name!r}")
        return found

    # -- changing -----------------------------------------------------------------------------

    def create(
        self,
        actor: Principal,
        name: str,
        owner: str | None = None,
        member: str | None = None,
        limits: dict[str, Any] | None = None,
    ) -> TenantView:
        """A tenant `name` owned by the actor (or, for administrators, by `owner`), with `member`
        (an account the actor manages) belonging to it and suspended with it."""
        self.policy.require(actor, "tenants:create")
        try:
            check_name(name, self.config.reserved_names)
        except NameRefused as exc:
            raise InvalidInput(str(exc)) from None
        wanted = self._limits(self.config.default_limits, limits)
        owner_id = self._owner(actor, owner)
        member_id = self._member(actor, member)
        # Names are unique across every owner: the check reads them all (the server's own check).
        with self.db.transaction(SYSTEM, readonly=True) as s:
            if s.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
                raise Conflict(f"a tenant named {name} exists")
            kept = s.scalar(select(func.count()).select_from(Tenant).where(Tenant.owner_id == owner_id)) or 0
            if kept >= self.config.max_per_owner:
                raise Conflict(
                    f"this owner keeps {kept} tenants; the limit is {self.config.max_per_owner} "
                    "(wcp360.yml tenants.max_per_owner)"
                )
        with agent_errors():
            host = self.agent.call(TenantCreate(tenant=name, limits=wanted), actor.actor_label)
        assert isinstance(host, TenantHost)

        def new_tenant(s: OrmSession) -> Tenant:
            tenant = Tenant(
                id=uuid.uuid4(),
                name=name,
                owner_id=owner_id,
                status="active",
                uid=host.uid,
                gid=host.gid,
                home=host.home,
                limits=wanted.model_dump(mode="json"),
                degraded=list(host.degraded),
            )
            if member_id is not None:
                s.add(tenant)
                s.flush()  # the row exists before the account names it
                s.execute(update(User).where(User.id == member_id).values(tenant_id=tenant.id))
            return tenant

        def recorded(tenant: Tenant) -> dict[str, Any]:
            return {
                "name": name,
                "owner_id": str(owner_id),
                "member_id": str(member_id) if member_id else None,
                "uid": host.uid,
                "home": host.home,
                "degraded": host.degraded,
            }

        try:
            return self.owned.create(actor, new_tenant, tenant_view, recorded)
        except Exception:
            self._undo(TenantDelete(tenant=name), actor)
            raise

    def suspend(self, actor: Principal, tenant_id: uuid.UUID) -> TenantView:
        return self._set_status(actor, tenant_id, "suspended")

    def resume(self, actor: Principal, tenant_id: uuid.UUID) -> TenantView:
        return self._set_status(actor, tenant_id, "active")

    def set_limits(self, actor: Principal, tenant_id: uuid.UUID, changes: dict[str, Any]) -> TenantView:
        tenant = self.owned.authorised(actor, tenant_id, "tenants:update")
        wanted = self._limits(TenantLimits.model_validate(tenant.limits), changes)
        with agent_errors():
            self.agent.call(TenantSetLimits(tenant=tenant.name, limits=wanted), actor.actor_label)
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
            row = s.get(Tenant, tenant_id)
            if row is None:
                raise NotFound("no such tenant")
            row.limits = wanted.model_dump(mode="json")
            view = tenant_view(row)
        audit.record(
            "tenant_limits",
            actor=actor,
            resource_type="tenant",
            resource_id=str(tenant_id),
            details={"name": tenant.name, "limits": wanted.model_dump(mode="json")},
        )
        return view

    def delete(self, actor: Principal, tenant_id: uuid.UUID, confirm: str) -> None:
        """Remove the tenant from the host (its home archived first) and from the panel; `confirm`
        must repeat its name, so a stray request cannot wipe a home."""
        tenant = self.owned.authorised(actor, tenant_id, "tenants:delete", shared=False)
        if confirm != tenant.name:
            raise InvalidInput(f"confirm by giving the tenant's name ({tenant.name}) again")
        with agent_errors():
            host = self.agent.call(TenantDelete(tenant=tenant.name), actor.actor_label)
        archive = host.archive if isinstance(host, TenantHost) else None
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
            # Its accounts stay (an administrator decides about them), no longer suspended with it.
            s.execute(
                update(User).where(User.tenant_id == tenant_id, User.status == "suspended").values(status="active")
            )
        self.owned.delete(actor, tenant_id, "tenants:delete", lambda row: {"name": row.name, "archive": archive})

    # -- helpers ------------------------------------------------------------------------------

    def _set_status(self, actor: Principal, tenant_id: uuid.UUID, status: str) -> TenantView:
        tenant = self.owned.authorised(actor, tenant_id, "tenants:update")
        if tenant.status == status:
            raise Conflict(f"tenant {tenant.name} is {status} already")
        verb = TenantSuspend(tenant=tenant.name) if status == "suspended" else TenantResume(tenant=tenant.name)
        with agent_errors():
            self.agent.call(verb, actor.actor_label)
        try:
            with self.db.transaction(RowScope.decided(actor.user_id)) as s:
                row = s.get(Tenant, tenant_id, with_for_update=True)
                if row is None:
                    raise NotFound("no such tenant")
                row.status = status
                row.suspended_at = utcnow() if status == "suspended" else None
                # Its accounts cannot sign in or act while it is suspended (every authentication
                # requires status "active"); resuming gives back only what suspending took.
                before, after = ("active", "suspended") if status == "suspended" else ("suspended", "active")
                s.execute(update(User).where(User.tenant_id == tenant_id, User.status == before).values(status=after))
                view = tenant_view(row)
        except Exception:
            undo = TenantResume(tenant=tenant.name) if status == "suspended" else TenantSuspend(tenant=tenant.name)
            self._undo(undo, actor)
            raise
        audit.record(
            "tenant_suspend" if status == "suspended" else "tenant_resume",
            actor=actor,
            resource_type="tenant",
            resource_id=str(tenant_id),
            details={"name": tenant.name},
        )
        return view

    def _undo(self, verb: TenantDelete | TenantResume | TenantSuspend, actor: Principal) -> None:
        try:
            self.agent.call(verb, actor.actor_label)
        except (AgentRefused, AgentUnavailable) as exc:
            audit.record(
                "tenant_undo_failed",
                actor=actor,
                outcome="failure",
                resource_type="tenant",
                resource_id=verb.tenant,
                details={"verb": verb.verb, "reason": str(exc)[:300]},
            )

    @staticmethod
    def _limits(base: TenantLimits, changes: dict[str, Any] | None) -> TenantLimits:
        merged = {**base.model_dump(), **(changes or {})}
        try:
            return TenantLimits.model_validate(merged)
        except ValueError as exc:
            raise InvalidInput(f"invalid limits: {str(exc).splitlines()[-1].strip()}") from None

    def _owner(self, actor: Principal, owner: str | None) -> uuid.UUID:
        if owner is None:
            if actor.user_id is None:
                raise InvalidInput("name the account that owns the tenant (owner)")
            return actor.user_id
        # Only administrators give a tenant to someone else: a reseller owns what it creates.
        self.policy.require(actor, ANY_OWNER)
        return self._account(owner)

    def _member(self, actor: Principal, member: str | None) -> uuid.UUID | None:
        if member is None:
            return None
        member_id = self._account(member)
        with self.db.transaction(NOBODY, readonly=True) as s:  # accounts are not behind RLS
            user = s.get(User, member_id)
            if user is None:
                raise NotFound(f"no user named {member!r}")
            if user.tenant_id is not None:
                raise Conflict(f"{member} belongs to another tenant already")
            created_by = user.created_by
        # Only an account the actor manages (a reseller's own customers; anyone for administrators).
        self.policy.require(actor, "users:update", Resource(USERS.name, id=str(member_id), owner_id=created_by))
        return member_id

    def _account(self, name: str) -> uuid.UUID:
        with self.db.transaction(NOBODY, readonly=True) as s:  # accounts are not behind RLS
            found = s.scalar(select(User.id).where(User.username == name.strip().lower()))
        if found is None:
            raise NotFound(f"no user named {name!r}")
        return found
