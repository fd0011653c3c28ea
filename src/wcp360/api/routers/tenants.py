"""/api/v1/tenants: hosting customers (a Linux user, group and home each, made by the system
agent): create, list, show, suspend, resume, limits, delete; and each tenant's supervised
processes (PHP-FPM pools, Node apps, in its jail) with its resource usage."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool

from wcp360.api.deps import PrincipalDep, RuntimeDep, WindowDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.problems import PROBLEM_JSON
from wcp360.api.schemas import StrictBody
from wcp360.errors import InvalidInput
from wcp360.hosting.views import (
    DatabaseCredentialsView,
    DatabaseView,
    ProcessView,
    TenantProcessesView,
    TenantView,
)
from wcp360.system.protocol import Argv, DatabaseEngineName, ProcessName, ProcessSpec
from wcp360.system.syscalls import RuntimeClass
from wcp360.views import Page

HOST_FAILED = {
    "description": "The host could not do it (a host command failed); nothing was changed",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
router = APIRouter(prefix=f"{API_PREFIX}/tenants", tags=["tenants"], responses={502: HOST_FAILED})



class LimitsBody(StrictBody):
    """Any of the limits; the others keep their value (wcp360.yml tenants.default_limits at first)."""

    disk: Annotated[int, Field(ge=1, le=2**50)] | Annotated[str, Field(max_length=32)] | None = None
    processes: Annotated[int, Field(ge=1, le=65536)] | None = None
    memory: Annotated[int, Field(ge=1, le=2**50)] | Annotated[str, Field(max_length=32)] | None = None
    cpu_percent: Annotated[int, Field(ge=1, le=100_000)] | None = None
    io_weight: Annotated[int, Field(ge=1, le=10_000)] | None = None

    def changes(self) -> dict[str, int | str]:
        return {key: value for key, value in self.model_dump().items() if value is not None}


class TenantBody(StrictBody):
    name: Annotated[str, Field(min_length=1, max_length=32)]
    # Administrators only: the account that owns it (default: the caller).
    owner: Annotated[str | None, Field(max_length=64)] = None
    # An account the caller manages that belongs to the tenant (suspended with it).
    member: Annotated[str | None, Field(max_length=64)] = None
    limits: LimitsBody | None = None


@router.post("", status_code=201)
async def create_tenant(body: TenantBody, actor: PrincipalDep, rt: RuntimeDep) -> TenantView:
    limits = body.limits.changes() if body.limits else None
    return await run_in_threadpool(rt.tenants.create, actor, body.name, body.owner, body.member, limits)


@router.get("")
def list_tenants(
    actor: PrincipalDep, rt: RuntimeDep, window: WindowDep, status: Literal["active", "suspended"] | None = None
) -> Page[TenantView]:
    items, total = rt.tenants.list_tenants(actor, window.limit, window.offset, status)
    return Page[TenantView](items=items, total=total, limit=window.limit, offset=window.offset)


@router.get("/{tenant_id}")
def get_tenant(tenant_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TenantView:
    return rt.tenants.get(actor, tenant_id)


@router.post("/{tenant_id}/suspend")
def suspend(tenant_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TenantView:
    return rt.tenants.suspend(actor, tenant_id)


@router.post("/{tenant_id}/resume")
def resume(tenant_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TenantView:
    return rt.tenants.resume(actor, tenant_id)


@router.patch("/{tenant_id}/limits")
def set_limits(tenant_id: uuid.UUID, body: LimitsBody, actor: PrincipalDep, rt: RuntimeDep) -> TenantView:
    return rt.tenants.set_limits(actor, tenant_id, body.changes())


@router.delete("/{tenant_id}", status_code=204)
def delete_tenant(
    tenant_id: uuid.UUID,
    actor: PrincipalDep,
    rt: RuntimeDep,
    confirm: Annotated[str, Query(min_length=1, max_length=32, description="the tenant's name, again")],
) -> Response:
    """The home is archived (wcp360.yml tenants.archive_dir, kept tenants.archive_retention),
    then the home, the Linux user and its group are removed."""
    rt.tenants.delete(actor, tenant_id, confirm)
    return Response(status_code=204)


class ProcessBody(StrictBody):
    """`php`: the tenant's own php-fpm pool (no argv). `node`, `static`: argv, run in the jail
    with $SOCKET naming the Unix socket to listen on. `network`: reach out beyond the jail
    (TCP connect only; nothing listens on TCP)."""

    name: ProcessName
    runtime: RuntimeClass
    argv: Argv | None = None
    network: bool = False


@router.get("/{tenant_id}/processes")
def list_processes(tenant_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TenantProcessesView:
    """The tenant's processes and its usage from its cgroups (CPU seconds, memory, pids, PSI)."""
    return rt.processes.list(actor, tenant_id)


@router.post("/{tenant_id}/processes", status_code=201)
async def start_process(tenant_id: uuid.UUID, body: ProcessBody, actor: PrincipalDep, rt: RuntimeDep) -> ProcessView:
    """Declare the process (replacing one of the same name) and start it."""
    try:
        spec = ProcessSpec(**body.model_dump())
    except ValidationError as exc:
        raise InvalidInput(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    return await run_in_threadpool(rt.processes.start, actor, tenant_id, spec)


@router.post("/{tenant_id}/processes/{name}/{action}")
async def control_process(
    tenant_id: uuid.UUID,
    name: Annotated[str, Path(max_length=32)],
    action: Literal["start", "stop", "restart"],
    actor: PrincipalDep,
    rt: RuntimeDep,
) -> ProcessView:
    return await run_in_threadpool(rt.processes.control, actor, tenant_id, name, action)


@router.delete("/{tenant_id}/processes/{name}", status_code=204)
async def remove_process(
    tenant_id: uuid.UUID, name: Annotated[str, Path(max_length=32)], actor: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Stop it and forget it."""
    await run_in_threadpool(rt.processes.control, actor, tenant_id, name, "remove")
    return Response(status_code=204)


class DatabaseBody(StrictBody):
    engine: DatabaseEngineName
    name: Annotated[str, Field(min_length=1, max_length=64)]


@router.get("/{tenant_id}/databases")
async def list_databases(tenant_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> list[DatabaseView]:
    """The tenant's databases (engine, name, user, where to connect, size), never a password."""
    return await run_in_threadpool(rt.databases.list, actor, tenant_id)


@router.post("/{tenant_id}/databases", status_code=201)
async def create_database(
    tenant_id: uuid.UUID, body: DatabaseBody, actor: PrincipalDep, rt: RuntimeDep
) -> DatabaseCredentialsView:
    """A database `<tenant>_<name>` and its one user; the password is in this answer only (every
    API answer is `Cache-Control: no-store`)."""
    return await run_in_threadpool(rt.databases.create, actor, tenant_id, body.engine, body.name)


@router.post("/{tenant_id}/databases/{engine}/{name}/rotate")
async def rotate_database(
    tenant_id: uuid.UUID,
    engine: DatabaseEngineName,
    name: Annotated[str, Path(max_length=64)],
    actor: PrincipalDep,
    rt: RuntimeDep,
) -> DatabaseCredentialsView:
    """A new password for the database's user; the old one and its sessions stop at once."""
    return await run_in_threadpool(rt.databases.rotate, actor, tenant_id, engine, name)


@router.delete("/{tenant_id}/databases/{engine}/{name}", status_code=204)
async def drop_database(
    tenant_id: uuid.UUID,
    engine: DatabaseEngineName,
    name: Annotated[str, Path(max_length=64)],
    actor: PrincipalDep,
    rt: RuntimeDep,
    confirm: Annotated[str, Query(min_length=1, max_length=64, description="the database's name, again")],
) -> Response:
    await run_in_threadpool(rt.databases.drop, actor, tenant_id, engine, name, confirm)
    return Response(status_code=204)
