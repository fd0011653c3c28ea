"""A task's environment values are secrets at rest: sealed in the database, opened only for the
run, and a sealed environment moved to another task or altered refuses the run (audited)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import NO_PRECOMPILE, CapturingSink
from tests.helpers import HOST, signed_in
from tests.workloads.test_execution_api import upload
from tests.workloads.test_scheduler import T0, create_task, due_now, wait_runs
from wcp360.runtime import Runtime
from wcp360.store.models import Task
from wcp360.store.scope import SYSTEM

SECRET = "s3cr3t-value-do-not-store"
# Writes its whole environment block ("KEY=VALUE\0...") to stdout.
PRINT_ENV = """(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 16) (i32.const 1024)))
    (i32.store (i32.const 8) (i32.const 1024))
    (i32.store (i32.const 12) (i32.load (i32.const 4)))
    (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 200)))))"""


@pytest.fixture
def config_dir(config_dir: Path) -> Path:
    (config_dir / "sandbox.yml").write_text(
        NO_PRECOMPILE + "  module_capabilities:\n    dev/envy:\n      environment_access: true\n"
    )
    return config_dir


def _raw_payload(rt: Runtime, task_id: str) -> str:
    with rt.db.transaction(SYSTEM) as s:
        value = s.execute(text("SELECT payload FROM tasks WHERE id = :id"), {"id": _db_id(rt, task_id)}).scalar()
    return value if isinstance(value, str) else json.dumps(value)


def _db_id(rt: Runtime, task_id: str) -> object:
    # SQLite keeps UUIDs as 32 hex characters, PostgreSQL as uuid.
    return uuid.UUID(task_id) if rt.db.is_postgres else uuid.UUID(task_id).hex


def test_env_values_are_sealed_at_rest_and_reach_the_module(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, PRINT_ENV, "envy")
    created = client.post(
        "/api/v1/tasks",
        json={"module_id": module_id, "name": "job", "kind": "interval", "schedule": "60", "env": {"API_KEY": SECRET}},
        headers=dev.headers,
    )
    assert created.status_code == 201 and SECRET not in created.text
    task = created.json()
    assert task["env"] == ["API_KEY"]
    assert SECRET not in client.get(f"/api/v1/tasks/{task['id']}", headers=dev.headers).text
    stored = _raw_payload(rt, task["id"])
    assert "API_KEY" in stored and SECRET not in stored  # names visible, values sealed

    due_now(rt, task["id"])
    [run] = wait_runs(rt, rt.scheduler.tick(T0))
    assert run["outcome"] == "ok" and f"API_KEY={SECRET}" in run["stdout"], run


def test_a_moved_or_altered_sealed_env_refuses_the_run(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, PRINT_ENV, "envy")
    victim = create_task(client, dev, module_id, name="victim", env={"API_KEY": SECRET})
    thief = create_task(client, dev, module_id, name="thief", env={"OTHER": "x"})
    with rt.db.transaction(SYSTEM) as s:
        rows = {str(t.id): t for t in s.query(Task).all()}
        sealed = rows[victim["id"]].payload["env_sealed"]
        rows[thief["id"]].payload = {**rows[thief["id"]].payload, "env_sealed": sealed}
        altered = sealed[:-8] + ("A" * 8 if not sealed.endswith("A" * 8) else "B" * 8)
        rows[victim["id"]].payload = {**rows[victim["id"]].payload, "env_sealed": altered}
    due_now(rt, thief["id"])
    due_now(rt, victim["id"])
    claims = rt.scheduler.tick(T0)
    runs = {str(c.task_id): rt.executor.runs.get(HOST, c.run_id).model_dump() for c in claims}
    assert runs[thief["id"]]["status"] == "refused" and "another task" in runs[thief["id"]]["message"]
    assert runs[victim["id"]]["status"] == "refused" and "does not open" in runs[victim["id"]]["message"]
    refused = {e.details["task_id"] for e in audit_events.of("run_refused")}
    assert refused == {thief["id"], victim["id"]}
