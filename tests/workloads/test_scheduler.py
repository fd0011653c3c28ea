"""Tasks and the scheduler: schedules, claims, priority, per-user concurrency, missed runs,
pause/resume/delete, history and permissions. Ticks are driven with an explicit clock."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink
from tests.helpers import HOST, Account, signed_in
from tests.workloads.test_execution_api import HELLO, upload
from wcp360.runtime import Runtime
from wcp360.store.scope import SYSTEM
from wcp360.workloads.scheduler import Claim

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def create_task(client: TestClient, account: Account, module_id: str, **fields: Any) -> dict[str, Any]:
    body = {"module_id": module_id, "name": "job", "kind": "interval", "schedule": "60", **fields}
    response = client.post("/api/v1/tasks", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def due_now(rt: Runtime, task_id: str, when: datetime = T0) -> None:
    """Put a task's next occurrence at `when` (tasks created through the API start at the real now)."""
    from wcp360.store.models import Task

    with rt.db.transaction(SYSTEM) as s:
        task = s.get(Task, uuid.UUID(task_id))
        assert task is not None
        task.next_run_at = when


def wait_runs(rt: Runtime, claims: list[Claim], timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    views = []
    for claim in claims:
        while True:
            view = rt.executor.runs.get(HOST, claim.run_id).model_dump()
            if view["status"] not in ("queued", "running"):
                views.append(view)
                break
            assert time.monotonic() < deadline, "scheduled run did not finish"
            time.sleep(0.05)
    return views


def test_interval_task_runs_each_occurrence_once(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    task = create_task(client, dev, module_id, args=["x"])
    due_now(rt, task["id"])
    claims = rt.scheduler.tick(T0 + timedelta(seconds=1))
    assert [c.task_id for c in claims] == [uuid.UUID(task["id"])]
    # The same instant again: the occurrence is taken, nothing more is due.
    assert rt.scheduler.tick(T0 + timedelta(seconds=1)) == []
    [run] = wait_runs(rt, claims)
    assert run["outcome"] == "ok" and run["stdout"] == "hello\n" and run["task_id"] == task["id"]
    assert run["scheduled_for"] == T0.isoformat() and run["user_id"] == dev.user_id
    after = client.get(f"/api/v1/tasks/{task['id']}", headers=dev.headers).json()
    assert after["next_run_at"] == (T0 + timedelta(seconds=60)).isoformat()
    # Next occurrence, one interval later.
    assert len(rt.scheduler.tick(T0 + timedelta(seconds=59))) == 0
    wait_runs(rt, rt.scheduler.tick(T0 + timedelta(seconds=60)))
    history = client.get(f"/api/v1/tasks/{task['id']}/runs", headers=dev.headers).json()
    assert [r["scheduled_for"] for r in history["items"]] == [
        (T0 + timedelta(seconds=60)).isoformat(),
        T0.isoformat(),
    ]


def test_cron_and_once(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    cron = create_task(client, dev, module_id, kind="cron", schedule="*/15 * * * *")
    due_now(rt, cron["id"])
    wait_runs(rt, rt.scheduler.tick(T0 + timedelta(seconds=2)))
    assert rt.tasks.get(HOST, uuid.UUID(cron["id"])).next_run_at == (T0 + timedelta(minutes=15)).isoformat()
    rt.tasks.delete(HOST, uuid.UUID(cron["id"]))

    once = create_task(client, dev, module_id, kind="once", schedule=(T0 + timedelta(hours=1)).isoformat())
    assert once["next_run_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert rt.scheduler.tick(T0 + timedelta(minutes=59)) == []
    claims = rt.scheduler.tick(T0 + timedelta(hours=1, seconds=1))
    assert [c.task_id for c in claims] == [uuid.UUID(once["id"])]
    wait_runs(rt, claims)
    finished = rt.tasks.get(HOST, uuid.UUID(once["id"])).model_dump()
    assert finished["status"] == "finished" and finished["next_run_at"] is None
    assert rt.scheduler.tick(T0 + timedelta(days=2)) == []


def test_priority_and_per_user_concurrency(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    other = signed_in(client, rt, "other", ["developer"])
    module_id = upload(client, dev, HELLO)
    other_module = upload(client, other, HELLO)
    tasks = {p: create_task(client, dev, module_id, name=f"p{p}", priority=p) for p in (1, 5, 3)}
    other_task = create_task(client, other, other_module, priority=-50)
    for task in [*tasks.values(), other_task]:
        due_now(rt, task["id"])
    # max_concurrent_per_user is 2: dev's two highest priorities run; the other user is not held up.
    claims = rt.scheduler.tick(T0)
    claimed = {c.task_id for c in claims}
    assert claimed == {uuid.UUID(tasks[5]["id"]), uuid.UUID(tasks[3]["id"]), uuid.UUID(other_task["id"])}
    wait_runs(rt, claims)
    # Once those finished, the waiting one runs (late, but within missed_after: it still runs).
    later = rt.scheduler.tick(T0 + timedelta(seconds=5))
    assert [c.task_id for c in later] == [uuid.UUID(tasks[1]["id"])]
    assert [r["scheduled_for"] for r in wait_runs(rt, later)] == [T0.isoformat()]


@pytest.mark.parametrize("policy", ["skip", "run_once"])
def test_missed_occurrences(client: TestClient, rt: Runtime, policy: str) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    task = create_task(client, dev, module_id, schedule="10", missed=policy)
    due_now(rt, task["id"])
    # Ten minutes without a scheduler: 60 occurrences passed. Neither policy runs them all.
    now = T0 + timedelta(minutes=10, seconds=3)
    claims = rt.scheduler.tick(now)
    history = client.get(f"/api/v1/tasks/{task['id']}/runs", headers=dev.headers).json()["items"]
    assert len(history) == 1
    if policy == "skip":
        assert claims == [] and history[0]["status"] == "skipped" and history[0]["outcome"] is None
    else:
        assert len(claims) == 1 and wait_runs(rt, claims)[0]["outcome"] == "ok"
    next_run = datetime.fromisoformat(rt.tasks.get(HOST, uuid.UUID(task["id"])).next_run_at)
    assert now < next_run <= now + timedelta(seconds=10)
    assert (next_run - T0).total_seconds() % 10 == 0  # still on the task's own grid
    assert rt.scheduler.tick(now) == []


def test_pause_resume_delete(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    task = create_task(client, dev, module_id)
    due_now(rt, task["id"])
    paused = client.post(f"/api/v1/tasks/{task['id']}/pause", headers=dev.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert rt.scheduler.tick(T0 + timedelta(seconds=1)) == []
    assert client.post(f"/api/v1/tasks/{task['id']}/pause", headers=dev.headers).status_code == 409
    resumed = client.post(f"/api/v1/tasks/{task['id']}/resume", headers=dev.headers).json()
    assert resumed["status"] == "active"
    # Resuming starts from now: the occurrences that fell in the pause are not made up.
    assert datetime.fromisoformat(resumed["next_run_at"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert client.delete(f"/api/v1/tasks/{task['id']}", headers=dev.headers).status_code == 204
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=dev.headers).status_code == 404
    assert client.get("/api/v1/tasks", headers=dev.headers).json()["total"] == 0


def test_bad_schedules_are_refused(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    bad = [
        {"kind": "cron", "schedule": "61 * * * *"},
        {"kind": "cron", "schedule": "* * * * * *"},  # seconds field: faster than min_interval
        {"kind": "cron", "schedule": "every minute"},
        {"kind": "interval", "schedule": "0"},
        {"kind": "interval", "schedule": "1.5"},
        {"kind": "interval", "schedule": "99999999999"},
        {"kind": "once", "schedule": "2030-01-01T10:00:00"},  # no offset
        {"kind": "once", "schedule": "tomorrow"},
        {"kind": "weekly", "schedule": "1"},
        {"kind": "interval", "schedule": "60", "missed": "sometimes"},
        {"kind": "interval", "schedule": "60", "priority": 1000},
        {"kind": "interval", "schedule": "60", "module_id": "not-a-uuid"},
    ]
    for fields in bad:
        body = {"module_id": module_id, "name": "job", **fields}
        response = client.post("/api/v1/tasks", json=body, headers=dev.headers)
        assert response.status_code == 422, (fields, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/api/v1/tasks", headers=dev.headers).json()["total"] == 0


def test_task_permissions(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    other = signed_in(client, rt, "other", ["developer"])
    viewer = signed_in(client, rt, "watcher", ["viewer"])
    module_id = upload(client, dev, HELLO)
    # Tasks need scheduler:create, and modules:execute on the module.
    body = {"module_id": module_id, "name": "job", "kind": "interval", "schedule": "60"}
    assert client.post("/api/v1/tasks", json=body, headers=viewer.headers).status_code == 403
    assert client.post("/api/v1/tasks", json=body, headers=other.headers).status_code == 403
    task = create_task(client, dev, module_id)
    # Owned and never shared: nobody else reads, pauses or deletes it.
    for method, path in (
        ("GET", f"/api/v1/tasks/{task['id']}"),
        ("GET", f"/api/v1/tasks/{task['id']}/runs"),
        ("POST", f"/api/v1/tasks/{task['id']}/pause"),
        ("DELETE", f"/api/v1/tasks/{task['id']}"),
    ):
        assert client.request(method, path, headers=other.headers).status_code == 403, (method, path)
    assert client.get("/api/v1/tasks", headers=other.headers).json()["total"] == 0
    # The viewer reads only their own (none); modules:execute was never theirs.
    assert client.get("/api/v1/tasks", headers=viewer.headers).json()["total"] == 0


def test_run_refused_when_the_owner_lost_the_permission(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    task = create_task(client, dev, module_id)
    due_now(rt, task["id"])
    rt.users.change_roles(HOST, uuid.UUID(dev.user_id), add=["viewer"], remove=["developer"])
    [claim] = rt.scheduler.tick(T0)
    run = rt.executor.runs.get(HOST, claim.run_id).model_dump()
    assert run["status"] == "refused" and "modules:execute" in run["message"]
    [event] = audit_events.of("run_refused")
    assert event.resource_id == str(claim.run_id) and event.details["task_id"] == task["id"]


def test_late_ticks_catch_up_without_losing_occurrences(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    task = create_task(client, dev, module_id, schedule="2")
    due_now(rt, task["id"])
    now = T0 + timedelta(seconds=5)  # late, but well within missed_after: nothing is skipped
    runs = []
    for _ in range(4):  # one occurrence per tick; waiting keeps the per-user limit out of the way
        runs += wait_runs(rt, rt.scheduler.tick(now))
    assert [r["scheduled_for"] for r in runs] == [(T0 + timedelta(seconds=s)).isoformat() for s in (0, 2, 4)]


def test_runs_of_a_dead_process_are_marked_lost(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    from wcp360.store.models import Run

    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = uuid.UUID(upload(client, dev, HELLO))
    now = datetime.now(UTC)
    with rt.db.transaction(SYSTEM) as s:
        # One left behind by a process that died a minute ago; one of this process, beating.
        dead = Run(module_id=module_id, user_id=uuid.UUID(dev.user_id), status="running", runner="gone:1:x")
        dead.heartbeat_at = now - timedelta(minutes=1)
        mine = Run(
            module_id=module_id, user_id=uuid.UUID(dev.user_id), status="queued", runner=rt.executor.runs.runner_id
        )
        mine.heartbeat_at = now - timedelta(minutes=1)
        s.add_all([dead, mine])
        s.flush()
        dead_id, mine_id = dead.id, mine.id
    assert rt.executor.runs.heartbeat() == 1  # only its own
    assert rt.executor.runs.sweep_lost() == 1
    assert rt.executor.runs.get(HOST, dead_id).status == "lost"
    assert rt.executor.runs.get(HOST, mine_id).status == "queued"
    assert [e.resource_id for e in audit_events.of("run_lost")] == [str(dead_id)]
