"""Compiling is not running: a module is `compiling -> ready | failed`, shown with its time; a
synchronous run of a module still compiling answers 409 with Retry-After (or waits when asked),
never a run that times out; a failed compile says why; a stopped server's compiles resume.

The only worker is held by the test, as a long run would hold it, so a compile stays in progress
exactly as long as the test wants, whatever the machine's speed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import runtime_for, write_files
from tests.helpers import Account, login, signed_in
from tests.workloads.test_execution_api import HELLO, upload
from wcp360.api.app import create_app
from wcp360.config import load_config
from wcp360.runtime import Runtime
from wcp360.workloads.engine.workers import Worker

SANDBOX = "sandbox:\n  precompile: true\n  workers: 1\n  max_concurrent_runs_per_user: 2\n"


@pytest.fixture
def compiling(config_dir: Path) -> Path:
    write_files(config_dir, {"sandbox.yml": SANDBOX})
    return config_dir


@pytest.fixture
def served(compiling: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Runtime]]:
    with (
        runtime_for(compiling, tmp_path / "data", request) as rt,
        TestClient(create_app(rt), raise_server_exceptions=False) as client,
    ):
        yield client, rt


def hold_the_only_worker(rt: Runtime) -> Worker:
    return rt.executor.pool.acquire("someone-else")


def compile_state(client: TestClient, account: Account, module_id: str, until_not: str = "") -> dict[str, Any]:
    """The module's compile state; with `until_not`, once it has left that state (readiness, not
    a deadline: the cap only stops a broken build from hanging the suite)."""
    for _ in range(60_000):
        state: dict[str, Any] = client.get(f"/api/v1/modules/{module_id}", headers=account.headers).json()["compile"]
        if state["state"] != until_not:
            return state
        time.sleep(0.01)
    raise AssertionError(f"still {until_not}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_run_before_ready_answers_at_once_or_waits_when_asked(served: tuple[TestClient, Runtime]) -> None:
    client, rt = served
    dev = signed_in(client, rt, "dev", ["developer"])
    held = hold_the_only_worker(rt)
    module_id = upload(client, dev, HELLO)
    state = compile_state(client, dev, module_id)
    assert state["state"] == "compiling" and state["seconds"] >= 0 and state["error"] is None

    refused = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers)
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith(":module-not-ready")
    assert int(refused.headers["Retry-After"]) >= 1
    assert "compiling" in refused.json()["detail"] and "wait_for_compile" in refused.json()["detail"]
    # A queued run is accepted: it waits for the compile by nature.
    queued = client.post(f"/api/v1/modules/{module_id}/execute", json={"async": True}, headers=dev.headers)
    assert queued.status_code == 202

    answers: list[Any] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            client.post(f"/api/v1/modules/{module_id}/execute", json={"wait_for_compile": True}, headers=dev.headers)
        )
    )
    waiting.start()
    rt.executor.pool.give_back(held, "someone-else")
    waiting.join()
    (answer,) = answers
    assert answer.status_code == 200 and answer.json()["outcome"] == "ok" and answer.json()["stdout"] == "hello\n"
    state = compile_state(client, dev, module_id)
    assert state["state"] == "ready" and state["seconds"] >= 0 and state["error"] is None
    run = client.get(f"/api/v1/runs/{queued.json()['run_id']}", headers=dev.headers).json()
    while run["status"] != "finished":
        run = client.get(f"/api/v1/runs/{queued.json()['run_id']}", headers=dev.headers).json()
    assert run["outcome"] == "ok"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_failed_compile_says_why_and_refuses_runs(served: tuple[TestClient, Runtime]) -> None:
    client, rt = served
    dev = signed_in(client, rt, "dev", ["developer"])
    held = hold_the_only_worker(rt)
    module_id = upload(client, dev, HELLO)
    digest = client.get(f"/api/v1/modules/{module_id}", headers=dev.headers).json()["digest"]
    # The stored bytes go bad before the worker reads them (a disk fault, an operator's mistake).
    (rt.config.data_dir / "modules" / digest[:2] / digest).write_bytes(b"\0asm\x01\0\0\0\xff")
    rt.executor.pool.give_back(held, "someone-else")
    state = compile_state(client, dev, module_id, until_not="compiling")
    assert state["state"] == "failed" and "not loadable" in state["error"]
    refused = client.post(f"/api/v1/modules/{module_id}/execute", json={"wait_for_compile": True}, headers=dev.headers)
    assert refused.status_code == 409 and "failed to compile: module not loadable" in refused.json()["detail"]
    queued = client.post(f"/api/v1/modules/{module_id}/execute", json={"async": True}, headers=dev.headers)
    assert queued.status_code == 409


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_compiles_a_stopped_server_left_resume_when_it_starts(compiling: Path, tmp_path: Path) -> None:
    first = Runtime.open(load_config(compiling, tmp_path / "data"))
    with TestClient(create_app(first), raise_server_exceptions=False) as client:
        dev = signed_in(client, first, "dev", ["developer"])
        hold_the_only_worker(first)
        module_id = upload(client, dev, HELLO)
    first.close()  # with the compile still waiting for a worker

    second = Runtime.open(load_config(compiling, tmp_path / "data"))
    try:
        with TestClient(create_app(second), raise_server_exceptions=False) as client:
            tokens = login(client, "dev")
            dev = Account("dev", dev.user_id, tokens["access_token"], tokens["refresh_token"])
            assert compile_state(client, dev, module_id)["state"] == "compiling"
            second.executor.resume_compiles()
            assert compile_state(client, dev, module_id, until_not="compiling")["state"] == "ready"
            run = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers).json()
            assert run["outcome"] == "ok"
    finally:
        second.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_the_compile_starts_before_the_analysis_and_a_compile_that_ends_first_still_marks_the_row(
    served: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload's compile runs while its analysis does. Here the analysis waits until that
    compile has finished, so the compile ends before the module's row exists: the row must still
    become ready (it asks the executor once it exists), with no second compile."""
    client, rt = served
    dev = signed_in(client, rt, "dev", ["developer"])
    from wcp360.workloads import modules as modules_module

    analyse = modules_module.analyse
    compiles: list[str] = []
    precompile = rt.executor.precompile

    def counting(digest: str) -> Any:
        compiles.append(digest)
        return precompile(digest)

    rt.modules.on_stored[:] = [counting]
    pool = rt.executor.pool
    execute = pool.execute
    jobs: list[Any] = []

    def recording(job: Any, user: str = "system") -> Any:
        jobs.append(job)
        return execute(job, user)

    monkeypatch.setattr(pool, "execute", recording)

    def after_the_compile(raw: Any, *args: Any, **kwargs: Any) -> Any:
        assert compiles, "the compile had not started when the analysis began"
        pending = rt.executor._compile_of(compiles[0])
        if pending is not None:
            pending.result(timeout=600)  # a bound on a hang, not a speed expectation
        return analyse(raw, *args, **kwargs)

    monkeypatch.setattr(modules_module, "analyse", after_the_compile)
    module_id = upload(client, dev, HELLO)
    state = compile_state(client, dev, module_id, until_not="compiling")
    assert state["state"] == "ready", state
    assert len(compiles) == 2 and [j.compile_only for j in jobs] == [True]  # asked twice, compiled once
    ran = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers)
    assert ran.status_code == 200 and ran.json()["outcome"] == "ok", ran.text
