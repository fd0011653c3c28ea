"""/api/v1/tenants/{id}/sites: a tenant's websites (nginx vhosts with ACME certificates), and
uploads into them. Owned through the tenant: its `tenants:read` / `tenants:update`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool

from wcp360.api.deps import PrincipalDep, RuntimeDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.schemas import StrictBody
from wcp360.errors import InvalidInput
from wcp360.hosting.sites import UploadFormat
from wcp360.hosting.views import SiteView, UploadView
from wcp360.system.protocol import ProcessName, SiteKind, SiteName, SiteRoot, SiteSpec

router = APIRouter(prefix=f"{API_PREFIX}/tenants", tags=["sites"])
# Uploads are bodies of their own kind, limited by tenants.websites.uploads.max_size (api.app).
UPLOAD_ROUTE = f"{API_PREFIX}/tenants/*/sites/*/files"
UPLOAD_MEDIA_TYPES = ("application/octet-stream", "application/zip", "application/x-tar", "application/gzip")
SitePath = Annotated[str, Path(max_length=32)]


class SiteBody(StrictBody):
    """`static`: files from the document root; `php`: the tenant's php process (its php-fpm pool);
    `proxy`: the tenant's app on its Unix socket. `root` is beneath the tenant's public/
    (default: the site's name)."""

    name: SiteName
    domains: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(min_length=1, max_length=100)]
    kind: SiteKind = "static"
    root: SiteRoot | None = None
    process: ProcessName | None = None
    autoindex: bool = False
    hsts: bool = True


@router.get("/{tenant_id}/sites")
async def list_sites(tenant_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> list[SiteView]:
    return await run_in_threadpool(rt.sites.list, actor, tenant_id)


@router.post("/{tenant_id}/sites", status_code=201)
async def create_site(tenant_id: uuid.UUID, body: SiteBody, actor: PrincipalDep, rt: RuntimeDep) -> SiteView:
    """Served when this answers; its certificate is issued before the answer when the CA is quick,
    and retried by the agent when not (see `certificate`)."""
    try:
        spec = SiteSpec(**body.model_dump())
    except ValidationError as exc:
        raise InvalidInput(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    return await run_in_threadpool(rt.sites.create, actor, tenant_id, spec)


@router.get("/{tenant_id}/sites/{name}")
async def show_site(tenant_id: uuid.UUID, name: SitePath, actor: PrincipalDep, rt: RuntimeDep) -> SiteView:
    return await run_in_threadpool(rt.sites.get, actor, tenant_id, name)


@router.post("/{tenant_id}/sites/{name}/certificate")
async def certify_site(tenant_id: uuid.UUID, name: SitePath, actor: PrincipalDep, rt: RuntimeDep) -> SiteView:
    """Issue (or renew) the site's certificate now."""
    return await run_in_threadpool(rt.sites.certify, actor, tenant_id, name)


@router.delete("/{tenant_id}/sites/{name}")
async def delete_site(
    tenant_id: uuid.UUID,
    name: SitePath,
    actor: PrincipalDep,
    rt: RuntimeDep,
    confirm: Annotated[str, Query(min_length=1, max_length=32, description="the site's name, again")],
) -> SiteView:
    """Its configuration goes and its certificate is revoked; its files stay in the home."""
    return await run_in_threadpool(rt.sites.delete, actor, tenant_id, name, confirm)


@router.put("/{tenant_id}/sites/{name}/files")
async def upload_files(
    request: Request,
    tenant_id: uuid.UUID,
    name: SitePath,
    actor: PrincipalDep,
    rt: RuntimeDep,
    format: Annotated[UploadFormat, Query(description="file, or an archive to unpack: zip, tar")] = "file",
    path: Annotated[str, Query(max_length=1024, description="a file's path, or where an archive unpacks")] = "",
) -> UploadView:
    """The body is the file or archive. Names are checked (no `..`, no absolute path, no link),
    sizes are limited (tenants.websites.uploads), every file is scanned when scanning is on, and
    nothing is written unless all of it passes."""
    if format == "file" and not path:
        raise InvalidInput("a file upload needs `path`, the file's place beneath the document root")
    await run_in_threadpool(rt.tenants.owned.authorised, actor, tenant_id, "tenants:update")  # before the body
    with rt.sites.staging() as staged:
        async for chunk in request.stream():
            staged.write(chunk)
        staged.close()
        return await run_in_threadpool(rt.sites.upload, actor, tenant_id, name, format, path, staged)
