"""/api/v1/modules: upload (raw application/wasm, text format, or a browser's multipart form),
list, get, download, delete, and the administrators' quarantine release."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from wcp360.api.deps import PrincipalDep, RuntimeDep, WindowDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.responses import ViewResponse
from wcp360.api.routers.shares import add_share_routes
from wcp360.api.schemas import StrictBody
from wcp360.errors import InvalidInput
from wcp360.views import Page
from wcp360.workloads.runs import ExecuteRequest
from wcp360.workloads.views import ModuleView, RunView

router = APIRouter(prefix=f"{API_PREFIX}/modules", tags=["modules"])
MODULE_MEDIA_TYPES = (
    "application/wasm",
    "application/octet-stream",
    "text/plain",
    "multipart/form-data",
    "application/json",
)


@router.post("", status_code=201)
async def upload(
    request: Request,
    actor: PrincipalDep,
    rt: RuntimeDep,
    name: Annotated[str | None, Query(max_length=128)] = None,
) -> ModuleView:
    """The body is streamed to a private file as it arrives (never held whole in memory), at most
    `quotas.max_concurrent_uploads_per_user` at once per account."""
    incoming = rt.modules.incoming
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with incoming.slot(str(actor.user_id)):
        if media_type == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=2)
            upload_file = form.get("module")
            if upload_file is None or isinstance(upload_file, str):
                raise InvalidInput("the form needs a file field named 'module'")
            received = await run_in_threadpool(incoming.copy, upload_file.file)
            name = name or str(form.get("name") or upload_file.filename or "").removesuffix(".wasm")
        else:
            received = await incoming.receive(request.stream())
        try:
            if not name:
                raise InvalidInput("give the module a name: ?name=...")
            return await run_in_threadpool(rt.modules.upload, actor, name, received, media_type == "text/plain")
        finally:
            received.unlink(missing_ok=True)


@router.get("")
def list_modules(
    actor: PrincipalDep,
    rt: RuntimeDep,
    window: WindowDep,
    status: Literal["active", "quarantined", "rejected"] | None = None,
    owner_id: uuid.UUID | None = None,
) -> Page[ModuleView]:
    items, total = rt.modules.list_modules(actor, window.limit, window.offset, status, owner_id)
    return Page[ModuleView](items=items, total=total, limit=window.limit, offset=window.offset)


@router.get("/{module_id}")
def get_module(module_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> ModuleView:
    return rt.modules.get(actor, module_id)


@router.get(
    "/{module_id}/download",
    response_class=Response,
    responses={
        200: {
            "description": "The module's bytes",
            "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def download(module_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    filename, data = rt.modules.download(actor, module_id)
    return Response(
        data, media_type="application/wasm", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.delete("/{module_id}", status_code=204)
def delete(module_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.modules.delete(actor, module_id)
    return Response(status_code=204)


@router.post("/{module_id}/release")
def release(module_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> ModuleView:
    return rt.modules.release(actor, module_id)


add_share_routes(router, "module_id", lambda rt: rt.modules.owned)


class ExecuteBody(StrictBody):
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = []
    stdin: Annotated[str, Field(max_length=1024 * 1024)] = ""
    env: Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = {}
    # Queue the run and answer at once with its id; poll GET /api/v1/runs/{id}.
    async_: Annotated[bool, Field(alias="async")] = False
    # Capture the instance's exported memories and mutable globals after the run (snapshots:create).
    snapshot: bool = False
    # The module is still compiling: wait for it (up to sandbox.yml max_compile_time) instead of
    # answering 409 with Retry-After at once.
    wait_for_compile: bool = False

    def request(self, restore_from: uuid.UUID | None = None) -> ExecuteRequest:
        return ExecuteRequest(
            self.args, self.stdin.encode(), self.env, self.snapshot, restore_from, self.wait_for_compile
        )


@router.post("/{module_id}/execute", response_model=RunView, responses={202: {"model": RunView}})
async def execute(module_id: uuid.UUID, body: ExecuteBody, actor: PrincipalDep, rt: RuntimeDep) -> ViewResponse:
    # async: a run waits for its slot and its worker on the event loop, never in a thread of the
    # shared pool (sixty waiting runs used to take every thread and freeze the whole API).
    if body.async_:
        queued = await run_in_threadpool(rt.executor.execute, actor, module_id, body.request(), True)
        return ViewResponse(queued, 202)
    return ViewResponse(await rt.executor.execute_async(actor, module_id, body.request()))


runs_router = APIRouter(prefix=f"{API_PREFIX}/runs", tags=["modules"])


@runs_router.get("")
def list_runs(
    actor: PrincipalDep,
    rt: RuntimeDep,
    window: WindowDep,
    module_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    status: Literal["queued", "running", "finished", "skipped", "refused"] | None = None,
) -> Page[RunView]:
    items, total = rt.executor.runs.list(actor, window.limit, window.offset, module_id, task_id, status)
    return Page[RunView](items=items, total=total, limit=window.limit, offset=window.offset)


@runs_router.get("/{run_id}")
def get_run(run_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> RunView:
    return rt.executor.runs.get(actor, run_id)
