"""Executing modules through the API, in worker processes apart from the API process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import wasmtime
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink
from tests.helpers import Account, signed_in
from wcp360 import metrics
from wcp360.config.sandbox import ResourceLimits, SandboxConfig
from wcp360.runtime import Runtime
from wcp360.workloads.engine.workers import Job, WorkerPool

WASM = {"Content-Type": "application/wasm"}
HELLO = """(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1) (data (i32.const 16) "hello\\n") (data (i32.const 0) "\\10\\00\\00\\00\\06\\00\\00\\00")
  (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
# Sleeps 5 s inside a WASI host call (poll_oneoff on the monotonic clock): neither fuel nor epoch
# interruption can stop a module blocked in the host, only killing its worker can.
SLEEPER = """(module (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\01\\00\\00\\00") (data (i32.const 24) "\\00\\f2\\05\\2a\\01\\00\\00\\00")
  (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"""
# An endless loop (high) that also grows memory with no maximum (medium): risk 8, quarantined.
SPIN = (
    '(module (memory (export "memory") 1) (func (export "_start") (loop $l (drop (memory.grow (i32.const 0)))'
    " (br $l))))"
)


def upload(client: TestClient, account: Account, source: bytes | str, name: str = "app") -> str:
    headers = {**account.headers, "Content-Type": "text/plain" if isinstance(source, str) else "application/wasm"}
    body = source.encode() if isinstance(source, str) else source
    response = client.post(f"/api/v1/modules?name={name}", content=body, headers=headers)
    assert response.status_code == 201, response.text
    module_id: str = response.json()["id"]
    return module_id


def test_execute_and_read_the_run_back(client: TestClient, rt: Runtime, audit_events: CapturingSink) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    before = metrics.EXECUTIONS.labels(outcome="ok")._value.get()
    response = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["outcome"] == "ok" and run["exit_code"] == 0 and run["stdout"] == "hello\n"
    assert set(run) >= {
        "run_id",
        "outcome",
        "exit_code",
        "stdout",
        "stderr",
        "duration_ms",
        "fuel_used",
        "memory_peak_bytes",
    }
    assert client.get(f"/api/v1/runs/{run['run_id']}", headers=dev.headers).json()["stdout"] == "hello\n"
    assert metrics.EXECUTIONS.labels(outcome="ok")._value.get() == before + 1
    event = audit_events.of("module_execute")[0]
    assert event.resource_id == module_id and event.details["result"] == "ok"
    # The event is built before the run row is stored (the two overlap): both describe one run.
    assert (event.details["run_id"], event.details["duration_ms"]) == (run["run_id"], run["duration_ms"])
    assert event.details["exit_status"] == run["exit_code"] == 0
    # The workers confined themselves before running anything.
    confinement = rt.executor.pool.workers[0].confinement
    assert confinement.no_new_privs and confinement.landlock and confinement.seccomp, confinement


def test_c_program_with_args_and_stdin(client: TestClient, rt: Runtime, c_program: bytes) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, c_program, "sum")
    run = client.post(
        f"/api/v1/modules/{module_id}/execute", json={"args": ["a", "b"], "stdin": "40\n2\n"}, headers=dev.headers
    ).json()
    assert run["outcome"] == "ok" and run["stdout"] == "sum=42 args=3 last=57\n"


def test_quarantined_module_cannot_run_until_released(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, SPIN, "spin")
    refused = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers)
    assert refused.status_code == 409 and "quarantined" in refused.json()["detail"]
    admin = signed_in(client, rt, "boss", ["admin"])
    client.post(f"/api/v1/modules/{module_id}/release", headers=admin.headers)
    run = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers).json()
    assert run["outcome"] == "out_of_fuel"
    assert client.get("/healthz").status_code == 200


def test_a_worker_killed_mid_run_is_replaced(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    admin = signed_in(client, rt, "boss", ["admin"])
    slow = upload(client, dev, SLEEPER, "slow")
    assert admin.user_id
    quick = upload(client, dev, HELLO, "quick")
    pool = rt.executor.pool
    restarts = metrics.WORKER_RESTARTS.labels(reason="crashed")._value.get()
    done, killed = threading.Event(), set()

    def kill_busy_workers() -> None:
        # Readiness, not a delay: kill whichever worker is checked out (holding the run) until the
        # run has answered. A worker killed before it got the job is replaced and the run moves to
        # the next one, which is killed in turn; idle workers are never touched.
        while not done.is_set():
            idle = {id(worker) for worker in list(pool._queue._idle)}
            for worker in list(pool.workers):
                if id(worker) not in idle and worker.process.is_alive():
                    with contextlib.suppress(ProcessLookupError):  # reaped meanwhile by the pool
                        os.kill(worker.process.pid, signal.SIGKILL)
                        killed.add(worker.process.pid)

    killer = threading.Thread(target=kill_busy_workers)
    killer.start()
    try:
        run = client.post(f"/api/v1/modules/{slow}/execute", json={}, headers=dev.headers).json()
    finally:
        done.set()
        killer.join()
    assert run["outcome"] == "trap" and "died" in run["message"]
    after = client.post(f"/api/v1/modules/{quick}/execute", json={}, headers=dev.headers).json()
    assert after["outcome"] == "ok" and after["stdout"] == "hello\n"
    assert metrics.WORKER_RESTARTS.labels(reason="crashed")._value.get() > restarts
    assert killed and not killed & {w.process.pid for w in pool.workers}


def test_only_permitted_users_execute(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    other = signed_in(client, rt, "other", ["developer"])
    assert client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=other.headers).status_code == 403
    viewer = signed_in(client, rt, "looker", ["viewer"])
    assert client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=viewer.headers).status_code == 403
    bad = client.post(f"/api/v1/modules/{module_id}/execute", json={"args": "x"}, headers=dev.headers)
    assert bad.status_code == 422
    run = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers).json()
    assert client.get(f"/api/v1/runs/{run['run_id']}", headers=other.headers).status_code == 403
    admin = signed_in(client, rt, "boss", ["admin"])
    assert client.get(f"/api/v1/runs/{run['run_id']}", headers=admin.headers).status_code == 200


def _pool_for(root: Path, source: str, max_execution_time: float, grace: float) -> tuple[WorkerPool, str]:
    """A one-worker pool over a module store holding `source` alone; returns it and the digest."""
    raw = bytes(wasmtime.wat2wasm(source))
    digest = hashlib.sha256(raw).hexdigest()
    (root / "store" / digest[:2]).mkdir(parents=True)
    (root / "store" / digest[:2] / digest).write_bytes(raw)
    limits = ResourceLimits(max_execution_time=timedelta(seconds=max_execution_time))
    return WorkerPool(
        SandboxConfig(workers=1, resource_limits=limits), root / "store", root / "work", b"k" * 32, grace=grace
    ), digest


def test_a_hung_worker_is_killed_at_the_hard_limit(tmp_path: Path) -> None:
    pool, digest = _pool_for(tmp_path, SLEEPER, max_execution_time=0.5, grace=0.5)
    try:
        first = pool.workers[0].process.pid
        started = time.monotonic()
        result = pool.execute(Job(digest))
        assert result.outcome == "timeout" and "killed" in (result.message or "")
        assert time.monotonic() - started < 4.5  # killed at ~1 s, not after the module's 5 s sleep
        assert pool.workers[0].process.pid != first and pool.workers[0].process.is_alive()
    finally:
        pool.close()


def test_a_run_takes_an_idle_worker_that_already_holds_its_module(tmp_path: Path) -> None:
    """Loading a large module's artifact costs a worker most of a second: of the idle workers, a run
    takes one that has its module in memory. Proven by taking the module away from the disk after
    the first run: every later run must land on the worker that still holds it."""
    pool, digest = _pool_for(tmp_path, HELLO, max_execution_time=5, grace=1)
    try:
        pool.sandbox = pool.sandbox.model_copy(update={"workers": 2})
        pool._add()  # a second worker, idle beside the first
        assert pool.execute(Job(digest)).outcome == "ok"
        (tmp_path / "store" / digest[:2] / digest).unlink()
        for artifact in (tmp_path / "work" / "compiled").iterdir():
            artifact.unlink()
        results = [pool.execute(Job(digest)) for _ in range(4)]
        assert [r.outcome for r in results] == ["ok"] * 4, results[0].message
        holders = [w for w in pool.workers if digest in w.holds]
        assert len(holders) == 1
        # With the holder busy, the run takes the other worker (a preference, never a wait), which
        # cannot load the module now: a typed failure, and that worker stays up.
        held = pool.acquire("u", digest=digest)
        assert held is holders[0]
        failed = pool.execute(Job(digest), "u")
        assert failed.outcome == "trap" and "not loadable" in (failed.message or "")
        pool.give_back(held, "u")
    finally:
        pool.close()


def test_uploads_are_compiled_ahead_of_time(client: TestClient, rt: Runtime, c_program: bytes) -> None:
    rt.executor.sandbox = rt.executor.sandbox.model_copy(update={"precompile": True})
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, c_program, "aot")
    digest = client.get(f"/api/v1/modules/{module_id}", headers=dev.headers).json()["digest"]
    compiled = rt.config.data_dir / "workers" / "compiled"
    deadline = time.monotonic() + 60
    while not (compiled / f"{digest}.tag").exists():
        assert time.monotonic() < deadline, "the module was not compiled ahead of time"
        time.sleep(0.1)
    # A tampered artifact is never deserialized: its tag no longer matches, so it is compiled again.
    artifact = compiled / f"{digest}.cwasm"
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"\x00")
    for worker in rt.executor.pool.workers:  # forget the in-memory copies
        worker.kill()
    rt.executor._pool = None
    run = client.post(f"/api/v1/modules/{module_id}/execute", json={"stdin": "1\n"}, headers=dev.headers).json()
    assert run["outcome"] == "ok" and run["stdout"].startswith("sum=1 ")


def test_a_pool_started_before_the_first_upload_runs_it(client: TestClient, rt: Runtime) -> None:
    # Servers start the pool at start-up, before a fresh data dir has a module store: the workers'
    # Landlock rules must still cover the store (a regression once made every run a worker crash).
    assert not (rt.config.data_dir / "modules").exists()
    rt.executor.warm()
    deadline = time.monotonic() + 60
    while not (rt.executor._pool and rt.executor._pool.workers):
        assert time.monotonic() < deadline, "the pool did not start"
        time.sleep(0.05)
    dev = signed_in(client, rt, "dev", ["developer"])
    module_id = upload(client, dev, HELLO)
    run = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers).json()
    assert run["outcome"] == "ok" and run["stdout"] == "hello\n", run


def test_a_run_back_from_a_host_call_after_its_limit_is_a_timeout(tmp_path: Path) -> None:
    """Blocked in a host call past max_execution_time but back before the kill: still a timeout."""
    from tests.workloads.test_scheduler_processes import QUARTER_SECOND

    pool, digest = _pool_for(tmp_path, QUARTER_SECOND, max_execution_time=0.1, grace=5.0)
    try:
        worker = pool.workers[0].process.pid
        result = pool.execute(Job(digest))
        assert result.outcome == "timeout", result
        assert "(sandbox.yml resource_limits.max_execution_time)" in (result.message or ""), result
        assert pool.workers[0].process.pid == worker  # it answered: not killed
        # The pool judges by its own limit: the same quarter-second sleep within 2 s is fine.
        pool.sandbox = pool.sandbox.model_copy(
            update={"resource_limits": ResourceLimits(max_execution_time=timedelta(seconds=2))}
        )
        assert pool.execute(Job(digest)).outcome == "ok"
    finally:
        pool.close()
