"""A tenant's databases on the panel side: who may see and change them (the tenant's own
`tenants:read` / `tenants:update`, as for its processes), the audit trail, the typed views.
The agent makes them, holds the servers' admin connections and keeps the list; the password is
in the answer to create and rotate only, never stored or audited."""

from __future__ import annotations

import uuid

from wcp360 import audit
from wcp360.authz import Principal
from wcp360.errors import InvalidInput
from wcp360.hosting.tenants import TenantService, agent_errors
from wcp360.hosting.views import DatabaseCredentialsView, DatabaseView
from wcp360.system.protocol import (
    DatabaseCreate,
    DatabaseDrop,
    DatabaseEngineName,
    DatabaseHost,
    DatabaseList,
    DatabaseRotate,
    TenantDatabaseList,
)


def _part(tenant: str, database: str) -> str:
    return database.removeprefix(f"{tenant.replace('-', '_')}_")


def database_view(tenant: str, host: DatabaseHost) -> DatabaseView:
    return DatabaseView(
        engine=host.engine,
        name=_part(tenant, host.database),
        database=host.database,
        user=host.user,
        socket=host.socket,
        locked=host.locked,
        size_bytes=host.size_bytes,
        over_size=host.over_size,
    )


def credentials_view(tenant: str, host: DatabaseHost) -> DatabaseCredentialsView:
    assert host.password is not None  # create and rotate answer it
    return DatabaseCredentialsView(**database_view(tenant, host).model_dump(), password=host.password)


class DatabaseService:
    def __init__(self, tenants: TenantService) -> None:
        self.tenants = tenants
        self.agent = tenants.agent

    def list(self, actor: Principal, tenant_id: uuid.UUID) -> list[DatabaseView]:
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:read")
        with agent_errors():
            listing = self.agent.call(DatabaseList(tenant=tenant.name), actor.actor_label)
        assert isinstance(listing, TenantDatabaseList)
        return [database_view(tenant.name, host) for host in listing.databases]

    def create(
        self, actor: Principal, tenant_id: uuid.UUID, engine: DatabaseEngineName, name: str
    ) -> DatabaseCredentialsView:
        return self._credentials(actor, tenant_id, DatabaseCreate, "create", engine, name)

    def rotate(
        self, actor: Principal, tenant_id: uuid.UUID, engine: DatabaseEngineName, name: str
    ) -> DatabaseCredentialsView:
        return self._credentials(actor, tenant_id, DatabaseRotate, "rotate", engine, name)

    def _credentials(
        self,
        actor: Principal,
        tenant_id: uuid.UUID,
        verb: type[DatabaseCreate] | type[DatabaseRotate],
        action: str,
        engine: DatabaseEngineName,
        name: str,
    ) -> DatabaseCredentialsView:
        """Create and rotate: the agent answers the password, passed on once and nowhere else."""
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        with agent_errors():
            answered = self.agent.call(self._call(verb, tenant.name, engine, name), actor.actor_label)
        assert isinstance(answered, DatabaseHost)
        self._record(actor, tenant_id, tenant.name, action, answered)
        return credentials_view(tenant.name, answered)

    def drop(self, actor: Principal, tenant_id: uuid.UUID, engine: DatabaseEngineName, name: str, confirm: str) -> None:
        """`confirm` must repeat the database's name: a stray request cannot drop a database."""
        tenant = self.tenants.owned.authorised(actor, tenant_id, "tenants:update")
        if confirm != name:
            raise InvalidInput(f"confirm by giving the database's name ({name}) again")
        with agent_errors():
            dropped = self.agent.call(self._call(DatabaseDrop, tenant.name, engine, name), actor.actor_label)
        assert isinstance(dropped, DatabaseHost)
        self._record(actor, tenant_id, tenant.name, "drop", dropped)

    @staticmethod
    def _call(
        verb: type[DatabaseCreate] | type[DatabaseRotate] | type[DatabaseDrop], tenant: str, engine: str, name: str
    ) -> DatabaseCreate | DatabaseRotate | DatabaseDrop:
        try:
            return verb(tenant=tenant, engine=engine, name=name)
        except ValueError:
            raise InvalidInput(
                f"{name!r} is not a database name: a-z first, then a-z 0-9 _, at most 24 characters"
            ) from None

    @staticmethod
    def _record(actor: Principal, tenant_id: uuid.UUID, tenant: str, action: str, host: DatabaseHost) -> None:
        audit.record(
            f"tenant_database_{action}",
            actor=actor,
            resource_type="tenant",
            resource_id=str(tenant_id),
            details={"tenant": tenant, "engine": host.engine, "database": host.database},
        )
