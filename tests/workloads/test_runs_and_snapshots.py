"""Asynchronous runs (queued, polled) and snapshots: capture, restore, verification, sharing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import CapturingSink, problem_of
from tests.helpers import Account, signed_in
from tests.workloads.test_execution_api import HELLO, SLEEPER, upload
from wcp360.runtime import Runtime

# Each run adds one to an exported mutable global and to the byte at memory[100], then exits with
# their sum: 2 on a fresh instance, 4 when started from the state the first run left, and so on.
COUNTER = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (global $count (export "count") (mut i32) (i32.const 0))
  (func (export "_start")
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (call $exit (i32.add (global.get $count) (i32.load8_u (i32.const 100))))))"""


def execute(client: TestClient, account: Account, module_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/modules/{module_id}/execute", json=body, headers=account.headers)
    assert response.status_code in (200, 202), response.text
    result: dict[str, Any] = response.json()
    return result


def wait_finished(client: TestClient, account: Account, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", headers=account.headers).json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_async_run_is_queued_then_polled(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    response = client.post(f"/api/v1/modules/{module_id}/execute", json={"async": True}, headers=dev.headers)
    assert response.status_code == 202
    queued = response.json()
    assert queued["status"] in ("queued", "running") and queued["outcome"] is None
    run = wait_finished(client, dev, queued["run_id"])
    assert run["status"] == "finished" and run["outcome"] == "ok" and run["stdout"] == "hello\n"
    assert run["finished_at"] is not None
    listed = client.get("/api/v1/runs", params={"module_id": module_id}, headers=dev.headers).json()
    assert [r["run_id"] for r in listed["items"]] == [queued["run_id"]]
    # Someone else cannot read it, and does not see it listed.
    other = signed_in(client, rt, "other", ["developer"])
    assert client.get(f"/api/v1/runs/{queued['run_id']}", headers=other.headers).status_code == 403
    assert client.get("/api/v1/runs", headers=other.headers).json()["total"] == 0


def test_async_run_refused_before_queueing(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    other = signed_in(client, rt, "other", ["developer"])
    module_id = upload(client, dev, HELLO)
    denied = client.post(f"/api/v1/modules/{module_id}/execute", json={"async": True}, headers=other.headers)
    assert denied.status_code == 403
    assert client.get("/api/v1/runs", headers=dev.headers).json()["total"] == 0


def test_snapshot_captures_memory_and_globals_and_restore_continues(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    op = signed_in(client, rt, "op", ["operator", "developer"])
    module_id = upload(client, op, COUNTER, "counter")
    first = execute(client, op, module_id, snapshot=True)
    assert first["outcome"] == "exit" and first["exit_code"] == 2 and first["snapshot_id"]
    snapshot = client.get(f"/api/v1/snapshots/{first['snapshot_id']}", headers=op.headers).json()
    assert snapshot["module_id"] == module_id and len(snapshot["checksum"]) == 64 and snapshot["size"] > 65536

    second = client.post(
        f"/api/v1/snapshots/{first['snapshot_id']}/restore", json={"snapshot": True}, headers=op.headers
    )
    assert second.status_code == 200, second.text
    assert second.json()["exit_code"] == 4 and second.json()["restored_from"] == first["snapshot_id"]
    third = client.post(f"/api/v1/snapshots/{second.json()['snapshot_id']}/restore", json={}, headers=op.headers)
    assert third.json()["exit_code"] == 6
    # A plain run starts fresh: snapshots never leak into other runs.
    assert execute(client, op, module_id)["exit_code"] == 2
    assert {e.action for e in audit_events.events} >= {"snapshot_create", "module_execute"}
    listed = client.get("/api/v1/snapshots", params={"module_id": module_id}, headers=op.headers).json()
    assert listed["total"] == 2


def test_async_restore(client: TestClient, rt: Runtime) -> None:
    op = signed_in(client, rt, "op", ["operator", "developer"])
    module_id = upload(client, op, COUNTER, "counter")
    first = execute(client, op, module_id, snapshot=True)
    queued = client.post(f"/api/v1/snapshots/{first['snapshot_id']}/restore", json={"async": True}, headers=op.headers)
    assert queued.status_code == 202
    assert wait_finished(client, op, queued.json()["run_id"])["exit_code"] == 4


def test_altered_snapshot_is_refused(client: TestClient, rt: Runtime, tmp_path: Path) -> None:
    op = signed_in(client, rt, "op", ["operator", "developer"])
    module_id = upload(client, op, COUNTER, "counter")
    snapshot_id = execute(client, op, module_id, snapshot=True)["snapshot_id"]
    state = rt.config.data_dir / "snapshots" / f"{snapshot_id}.state"
    data = bytearray(state.read_bytes())
    data[-1] ^= 0x01
    state.write_bytes(bytes(data))
    runs_before = client.get("/api/v1/runs", headers=op.headers).json()["total"]
    refused = client.post(f"/api/v1/snapshots/{snapshot_id}/restore", json={}, headers=op.headers)
    assert refused.status_code == 409
    problem = problem_of(refused)
    assert problem["type"].endswith("snapshot-mismatch") and "checksum" in problem["detail"]
    assert client.get("/api/v1/runs", headers=op.headers).json()["total"] == runs_before


def test_snapshot_offered_to_another_module_is_refused(client: TestClient, rt: Runtime) -> None:
    op = signed_in(client, rt, "op", ["operator", "developer"])
    counter = upload(client, op, COUNTER, "counter")
    hello = upload(client, op, HELLO, "hello")
    snapshot_id = execute(client, op, counter, snapshot=True)["snapshot_id"]
    refused = client.post(f"/api/v1/snapshots/{snapshot_id}/restore", json={"module_id": hello}, headers=op.headers)
    assert refused.status_code == 409 and "digest" in problem_of(refused)["detail"]
    # The same bytes uploaded again are the same module as far as the state is concerned.
    again = upload(client, op, COUNTER, "counter-copy")
    same = client.post(f"/api/v1/snapshots/{snapshot_id}/restore", json={"module_id": again}, headers=op.headers)
    assert same.status_code == 200 and same.json()["exit_code"] == 4


def test_snapshot_permissions(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])  # snapshots:read only
    module_id = upload(client, dev, COUNTER, "counter")
    denied = client.post(f"/api/v1/modules/{module_id}/execute", json={"snapshot": True}, headers=dev.headers)
    assert denied.status_code == 403
    assert client.get("/api/v1/runs", headers=dev.headers).json()["total"] == 0

    owner = signed_in(client, rt, "owner", ["operator", "developer"])
    stranger = signed_in(client, rt, "stranger", ["operator", "developer"])
    own_module = upload(client, owner, COUNTER, "counter")
    snapshot_id = execute(client, owner, own_module, snapshot=True)["snapshot_id"]
    assert client.get(f"/api/v1/snapshots/{snapshot_id}", headers=stranger.headers).status_code == 403
    path = f"/api/v1/snapshots/{snapshot_id}/restore"
    assert client.post(path, json={}, headers=stranger.headers).status_code == 403

    # Shared for restore: the stranger may restore, but also needs to be able to execute the module.
    shared = client.post(
        f"/api/v1/snapshots/{snapshot_id}/shares", json={"user": "stranger", "action": "restore"}, headers=owner.headers
    )
    assert shared.status_code == 201, shared.text
    assert client.post(path, json={}, headers=stranger.headers).status_code == 403
    client.post(
        f"/api/v1/modules/{own_module}/shares", json={"user": "stranger", "action": "execute"}, headers=owner.headers
    )
    restored = client.post(path, json={}, headers=stranger.headers)
    assert restored.status_code == 200 and restored.json()["exit_code"] == 4
    assert restored.json()["user_id"] == stranger.user_id  # the run is the grantee's own
    # A grantee cannot pass the snapshot on.
    onward = client.post(
        f"/api/v1/snapshots/{snapshot_id}/shares", json={"user": "dev", "action": "restore"}, headers=stranger.headers
    )
    assert onward.status_code == 403
    # Only the owner deletes it; then it is gone for everyone.
    assert client.delete(f"/api/v1/snapshots/{snapshot_id}", headers=stranger.headers).status_code == 403
    assert client.delete(f"/api/v1/snapshots/{snapshot_id}", headers=owner.headers).status_code == 204
    assert client.post(path, json={}, headers=stranger.headers).status_code == 404
    assert not (rt.config.data_dir / "snapshots" / f"{snapshot_id}.state").exists()


def test_quotas_on_snapshots_and_queued_runs(config_dir: Path, tmp_path: Path) -> None:
    from wcp360.api.app import create_app
    from wcp360.config import load_config

    (config_dir / "sandbox.yml").write_text(
        "sandbox:\n  precompile: false\n  workers: 1\n  max_snapshots_per_user: 2\n  max_queued_runs_per_user: 2\n"
        # The synchronous run below waits behind both sleepers for the one worker (and is the
        # account's third run in flight).
        '  max_worker_wait: "300s"\n  max_concurrent_runs_per_user: 4\n'
    )
    rt = Runtime.open(load_config(config_dir, tmp_path / "quota-data"))
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            op = signed_in(client, rt, "op", ["operator", "developer"])
            module_id = upload(client, op, COUNTER, "counter")
            for _ in range(2):
                assert execute(client, op, module_id, snapshot=True)["snapshot_id"]
            refused = client.post(f"/api/v1/modules/{module_id}/execute", json={"snapshot": True}, headers=op.headers)
            assert refused.status_code == 409 and "limit is 2" in problem_of(refused)["detail"]
            runs_before = client.get("/api/v1/runs", headers=op.headers).json()["total"]
            assert runs_before == 2  # the refused request ran nothing

            # The worker is held by a run that sleeps; two more queue; the next is refused.
            sleeper = upload(client, op, SLEEPER, "sleeper")
            path = f"/api/v1/modules/{sleeper}/execute"
            first = client.post(path, json={"async": True}, headers=op.headers)
            second = client.post(path, json={"async": True}, headers=op.headers)
            assert first.status_code == 202 and second.status_code == 202
            third = client.post(path, json={"async": True}, headers=op.headers)
            assert third.status_code == 429 and third.headers["retry-after"] == "1"
            # Synchronous runs are not queued runs: they still go through.
            assert execute(client, op, module_id)["exit_code"] == 2
            wait_finished(client, op, first.json()["run_id"])
            wait_finished(client, op, second.json()["run_id"])
            assert client.post(path, json={"async": True}, headers=op.headers).status_code == 202
    finally:
        rt.close()
