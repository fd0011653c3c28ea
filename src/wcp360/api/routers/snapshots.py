"""/api/v1/snapshots: list, get, delete, share, and restore (run a module from a snapshot's state)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from wcp360.api.deps import PrincipalDep, RuntimeDep, WindowDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.responses import ViewResponse
from wcp360.api.routers.modules import ExecuteBody
from wcp360.api.routers.shares import add_share_routes
from wcp360.views import Page
from wcp360.workloads.views import RunView, SnapshotView

router = APIRouter(prefix=f"{API_PREFIX}/snapshots", tags=["snapshots"])


@router.get("")
def list_snapshots(
    actor: PrincipalDep,
    rt: RuntimeDep,
    window: WindowDep,
    module_id: uuid.UUID | None = None,
) -> Page[SnapshotView]:
    items, total = rt.executor.snapshots.list_snapshots(actor, window.limit, window.offset, module_id)
    return Page[SnapshotView](items=items, total=total, limit=window.limit, offset=window.offset)


@router.get("/{snapshot_id}")
def get_snapshot(snapshot_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> SnapshotView:
    return rt.executor.snapshots.get(actor, snapshot_id)


@router.delete("/{snapshot_id}", status_code=204)
def delete_snapshot(snapshot_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.executor.snapshots.delete(actor, snapshot_id)
    return Response(status_code=204)


class RestoreBody(ExecuteBody):
    # Run another module with the same digest (a re-upload); refused when the digests differ.
    module_id: Annotated[uuid.UUID | None, Field(strict=False)] = None


@router.post("/{snapshot_id}/restore", response_model=RunView, responses={202: {"model": RunView}})
async def restore(snapshot_id: uuid.UUID, body: RestoreBody, actor: PrincipalDep, rt: RuntimeDep) -> ViewResponse:
    # async, like execute: waiting for a worker happens on the event loop, not in a pool thread.
    request = body.request(restore_from=snapshot_id)
    if body.async_:
        queued = await run_in_threadpool(rt.executor.execute, actor, body.module_id, request, True)
        return ViewResponse(queued, 202)
    return ViewResponse(await rt.executor.execute_async(actor, body.module_id, request))


add_share_routes(router, "snapshot_id", lambda rt: rt.executor.snapshots.owned)
