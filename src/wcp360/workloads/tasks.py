"""Tasks: a module run on a schedule, owned by its creator and never shared (rbac `tasks`).

Permissions: `scheduler:read` to see one's tasks and their history, `scheduler:create` to create
tasks and manage (pause, resume, delete) one's own; `scheduler:*` holders with `system:any_owner`
manage everyone's. Creating a task also needs `modules:execute` on its module, and every run is
authorised again as the owner when it starts: a revoked permission stops the task.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from cryptography.fernet import InvalidToken

from wcp360 import audit
from wcp360.authz import Policy, Principal
from wcp360.authz.owned import Owned
from wcp360.authz.resources import TASKS
from wcp360.config.server import SchedulerConfig
from wcp360.errors import Conflict, InvalidInput, NotFound
from wcp360.keys import HostKeys
from wcp360.store.database import Database
from wcp360.store.models import Task
from wcp360.store.scope import RowScope
from wcp360.store.types import utcnow
from wcp360.workloads.modules import ModuleService
from wcp360.workloads.schedules import Schedule, ScheduleError
from wcp360.workloads.views import TaskView

MANAGE = ("scheduler:update", "scheduler:create")
REMOVE = ("scheduler:delete", "scheduler:create")


class SealedEnvError(ValueError):
    """A task's sealed environment that does not open (altered, moved, or another host's key)."""


def seal_env(keys: HostKeys, task_id: uuid.UUID, env: dict[str, str]) -> dict[str, Any]:
    """The payload fields that keep a task's environment: values may be secrets (API keys), so a
    database dump shows only the names. The task id is sealed in with them, so a sealed env copied
    to another task's row does not open there."""
    sealed = keys.encrypt(json.dumps({"task": str(task_id), "env": env}, separators=(",", ":")))
    return {"env_names": sorted(env), "env_sealed": sealed}


def open_env(keys: HostKeys, task_id: uuid.UUID, payload: dict[str, Any]) -> dict[str, str]:
    if "env_sealed" not in payload:
        return {}
    try:
        opened = json.loads(keys.decrypt(str(payload["env_sealed"])))
    except (InvalidToken, ValueError):
        raise SealedEnvError("the task's environment does not open (altered, or sealed with another key)") from None
    if opened.get("task") != str(task_id):
        raise SealedEnvError("the task's environment was sealed for another task")
    return {str(k): str(v) for k, v in opened["env"].items()}


def task_view(task: Task) -> TaskView:
    return TaskView(
        id=str(task.id),
        name=task.name,
        module_id=str(task.module_id),
        owner_id=str(task.user_id),
        kind=task.kind,
        schedule=task.schedule,
        args=list(task.payload.get("args", [])),
        stdin=task.payload.get("stdin", ""),
        env=list(task.payload.get("env_names", [])),  # names only: values stay sealed
        priority=task.priority,
        missed=task.missed,
        status=task.status,
        next_run_at=task.next_run_at.isoformat() if task.next_run_at else None,
        last_run_at=task.last_run_at.isoformat() if task.last_run_at else None,
        created_at=task.created_at.isoformat(),
    )


class TaskService:
    def __init__(
        self, db: Database, policy: Policy, modules: ModuleService, config: SchedulerConfig, keys: HostKeys
    ) -> None:
        self.db = db
        self.policy = policy
        self.modules = modules
        self.config = config
        self.keys = keys
        self.owned = Owned(db, policy, TASKS)

    def create(
        self,
        actor: Principal,
        module_id: uuid.UUID,
        name: str,
        kind: str,
        schedule: str,
        payload: dict[str, Any],
        priority: int = 0,
        missed: str = "skip",
        now: datetime | None = None,
    ) -> TaskView:
        self.policy.require(actor, "scheduler:create")
        if actor.user_id is None:
            raise InvalidInput("tasks belong to user accounts")
        try:
            parsed = Schedule.parse(kind, schedule, self.config.min_interval)
        except ScheduleError as exc:
            raise InvalidInput(str(exc)) from None
        module = self.modules.authorised(actor, module_id, "modules:execute")
        first = parsed.first(now or utcnow())
        task_id = uuid.uuid4()
        stored = {key: value for key, value in payload.items() if key != "env"}
        stored.update(seal_env(self.keys, task_id, dict(payload.get("env", {}))))
        task = Task(
            id=task_id,
            user_id=actor.user_id,
            module_id=module.id,
            name=name,
            kind=parsed.kind,
            schedule=parsed.expression,
            payload=stored,
            priority=priority,
            missed=missed,
            next_run_at=first,
        )
        details = {"module_id": str(module_id), "kind": parsed.kind, "schedule": parsed.expression}
        return self.owned.create(actor, lambda _s: task, task_view, lambda _row: details)

    def list_tasks(
        self, actor: Principal, limit: int = 50, offset: int = 0, status: str | None = None
    ) -> tuple[list[TaskView], int]:
        filters = [Task.status == status] if status is not None else []
        return self.owned.page(actor, task_view, *filters, order_by=Task.created_at.desc(), limit=limit, offset=offset)

    def get(self, actor: Principal, task_id: uuid.UUID) -> TaskView:
        return task_view(self._authorised(actor, task_id, "scheduler:read"))

    def pause(self, actor: Principal, task_id: uuid.UUID) -> TaskView:
        return self._set_status(actor, task_id, "paused", {"active"})

    def resume(self, actor: Principal, task_id: uuid.UUID, now: datetime | None = None) -> TaskView:
        return self._set_status(actor, task_id, "active", {"paused"}, now or utcnow())

    def delete(self, actor: Principal, task_id: uuid.UUID) -> None:
        self.owned.delete(actor, task_id, REMOVE)  # its runs stay in the history, with task_id cleared

    def _set_status(
        self, actor: Principal, task_id: uuid.UUID, status: str, allowed_from: set[str], now: datetime | None = None
    ) -> TaskView:
        self._authorised(actor, task_id, MANAGE)
        with self.db.transaction(RowScope.decided(actor.user_id)) as s:
            task = s.get(Task, task_id, with_for_update=True)
            if task is None:
                raise NotFound("no such task")
            if task.status not in allowed_from:
                raise Conflict(f"task is {task.status}")
            task.status = status
            if now is not None and task.kind != "once":
                # Resuming starts afresh: occurrences that fell in the pause are not "missed".
                schedule = Schedule(task.kind, task.schedule)  # type: ignore[arg-type]
                task.next_run_at = schedule.first(now)
            view = task_view(task)
        audit.record(
            "task_pause" if status == "paused" else "task_resume",
            actor=actor,
            resource_type="task",
            resource_id=str(task_id),
        )
        return view

    def _authorised(self, actor: Principal, task_id: uuid.UUID, permission: str | tuple[str, ...]) -> Task:
        return self.owned.authorised(actor, task_id, permission)
