"""/api/v1/tasks: scheduled module runs (cron, interval, once), pause/resume/delete, history."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import Field

from wcp360.api.deps import PrincipalDep, RuntimeDep, WindowDep
from wcp360.api.paths import API_PREFIX
from wcp360.api.schemas import StrictBody
from wcp360.views import Page
from wcp360.workloads.views import RunView, TaskView

router = APIRouter(prefix=f"{API_PREFIX}/tasks", tags=["scheduler"])


class TaskBody(StrictBody):
    module_id: Annotated[uuid.UUID, Field(strict=False)]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    kind: Literal["cron", "interval", "once"]
    # cron: "*/5 * * * *"; interval: seconds, e.g. "300"; once: "2026-12-01T09:00:00Z"
    schedule: Annotated[str, Field(min_length=1, max_length=128)]
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = []
    stdin: Annotated[str, Field(max_length=64 * 1024)] = ""
    env: Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = {}
    priority: Annotated[int, Field(ge=-100, le=100)] = 0
    missed: Literal["skip", "run_once"] = "skip"


@router.post("", status_code=201)
def create_task(body: TaskBody, actor: PrincipalDep, rt: RuntimeDep) -> TaskView:
    payload = {"args": body.args, "stdin": body.stdin, "env": body.env}
    return rt.tasks.create(
        actor, body.module_id, body.name, body.kind, body.schedule, payload, body.priority, body.missed
    )


@router.get("")
def list_tasks(
    actor: PrincipalDep,
    rt: RuntimeDep,
    window: WindowDep,
    status: Literal["active", "paused", "finished"] | None = None,
) -> Page[TaskView]:
    items, total = rt.tasks.list_tasks(actor, window.limit, window.offset, status)
    return Page[TaskView](items=items, total=total, limit=window.limit, offset=window.offset)


@router.get("/{task_id}")
def get_task(task_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TaskView:
    return rt.tasks.get(actor, task_id)


@router.post("/{task_id}/pause")
def pause(task_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TaskView:
    return rt.tasks.pause(actor, task_id)


@router.post("/{task_id}/resume")
def resume(task_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> TaskView:
    return rt.tasks.resume(actor, task_id)


@router.delete("/{task_id}", status_code=204)
def delete(task_id: uuid.UUID, actor: PrincipalDep, rt: RuntimeDep) -> Response:
    rt.tasks.delete(actor, task_id)
    return Response(status_code=204)


@router.get("/{task_id}/runs")
def history(
    task_id: uuid.UUID,
    actor: PrincipalDep,
    rt: RuntimeDep,
    window: WindowDep,
) -> Page[RunView]:
    rt.tasks.get(actor, task_id)  # the task's owner (or an administrator) only
    items, total = rt.executor.runs.list(actor, window.limit, window.offset, task_id=task_id)
    return Page[RunView](items=items, total=total, limit=window.limit, offset=window.offset)
