"""Owned resource types, each declared once.

A declaration names the rbac resource (`rbac.yml resources:` decides ownership and whether sharing
is on at all), the model and its owner column, what the trail calls it, the permission prefix when
it is not the resource name, and which actions an owner may share. `Policy.scope`, `Owned` and
`Sharing` read nothing else, so a new resource type (tenants, sites, databases) plugs in with one
line here and no new authorisation code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute

from wcp360.store.models import Base, Module, Run, Snapshot, Task, Tenant, User

RowT = TypeVar("RowT", bound=Base)


@dataclass(frozen=True)
class ResourceType(Generic[RowT]):
    name: str  # the rbac resource: `modules`
    model: type[RowT]
    audit_name: str  # `resource_type` on the trail and in "no such ..." answers: `module`
    owner: str = "owner_id"  # the model's owner column
    permissions: str = ""  # the permission prefix when it is not `name` (tasks: `scheduler`)
    shareable: tuple[str, ...] = ()  # actions an owner may share, when rbac turns sharing on

    def permission(self, action: str) -> str:
        return f"{self.permissions or self.name}:{action}"

    @property
    def owner_column(self) -> InstrumentedAttribute[uuid.UUID]:
        column: InstrumentedAttribute[uuid.UUID] = getattr(self.model, self.owner)
        return column

    @property
    def id_column(self) -> InstrumentedAttribute[Any]:
        column: InstrumentedAttribute[Any] = getattr(self.model, "id")  # noqa: B009 - typed by the bound, not the model
        return column

    def owned_by(self, owner: uuid.UUID) -> ColumnElement[bool]:
        condition: ColumnElement[bool] = self.owner_column == owner  # type: ignore[assignment]
        return condition

    def id_of(self, row: RowT) -> Any:
        return getattr(row, "id")  # noqa: B009 - every owned model has `id`; Base does not declare it

    def owner_of(self, row: RowT) -> uuid.UUID | None:
        owner: uuid.UUID | None = getattr(row, self.owner)
        return owner


MODULES = ResourceType("modules", Module, "module", shareable=("read", "execute"))
SNAPSHOTS = ResourceType("snapshots", Snapshot, "snapshot", shareable=("read", "restore"))
TASKS = ResourceType("tasks", Task, "task", owner="user_id", permissions="scheduler")
# A run is read with `modules:read`, and only by the account that ran it (never shared).
RUNS = ResourceType("runs", Run, "run", owner="user_id", permissions="modules")
# A user account is owned by whoever created it (administrators see all).
USERS = ResourceType("users", User, "user", owner="created_by")
# A hosting customer: owned by a reseller or by its own `tenant`-role account; never shared.
TENANTS = ResourceType("tenants", Tenant, "tenant")
