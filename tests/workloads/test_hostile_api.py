"""The hostile-module suite through the whole pipeline: upload, analysis, an administrator's
release, confined worker processes, stored runs, audit and metrics. Each case ends in its typed
outcome, and after each one the API still answers and an ordinary module still runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
from fastapi.testclient import TestClient

from tests.conftest import CapturingSink
from tests.helpers import signed_in
from tests.workloads.test_execution_api import HELLO, SLEEPER, WASM, upload
from wcp360 import metrics
from wcp360.runtime import Runtime

WASI = "wasi_snapshot_preview1"
MEMORY = '(memory (export "memory") 1)'


def _calls(function: str, signature: str, call: str) -> str:
    return (
        f'(module (import "{WASI}" "{function}" (func $f {signature})) {MEMORY} (func (export "_start") (drop {call})))'
    )


# name -> (module text, outcome, what else the run must show)
CASES: dict[str, tuple[str, str, dict[str, object]]] = {
    "infinite loop": ('(module (func (export "_start") (loop $l (br $l))))', "out_of_fuel", {}),
    "memory bomb": (
        f'(module {MEMORY} (func (export "_start") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1))'
        " (i32.const -1)))) unreachable))",
        "memory_limit",
        {},
    ),
    "deep recursion": ('(module (func $r (export "_start") (call $r)))', "stack_overflow", {}),
    "unreachable": ('(module (func (export "_start") unreachable))', "trap", {}),
    "proc_exit": (
        f'(module (import "{WASI}" "proc_exit" (func $x (param i32))) {MEMORY}'
        ' (func (export "_start") (call $x (i32.const 3))))',
        "exit",
        {"exit_code": 3},
    ),
    "output flood": (
        f'(module (import "{WASI}" "fd_write" (func $w (param i32 i32 i32 i32) (result i32))) {MEMORY}'
        ' (data (i32.const 0) "\\10\\00\\00\\00\\00\\02\\00\\00") (func (export "_start") (local i32)'
        " (loop $l (local.set 0 (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))"
        " (br_if $l (i32.eqz (local.get 0))))))",
        "output_limit",
        # 1024 NUL bytes become U+FFFD (PostgreSQL's text refuses NUL), three bytes each, and the
        # cap (max_output: 1024) applies after that conversion: 341 of them, 1023 bytes stored.
        {"stdout": "\ufffd" * 341},
    ),
    "file access without the capability": (
        _calls(
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
            "(call $f (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0)"
            " (i64.const 0) (i32.const 0) (i32.const 0))",
        ),
        # Refused with EACCES, as WASI refuses: the program ignored it and finished, refusal recorded.
        "ok",
        {"message_contains": "refused with an errno: wasi_snapshot_preview1.path_open"},
    ),
    "file access it cannot do without": (
        f'(module (import "{WASI}" "path_open" (func $f (param i32 i32 i32 i32 i32 i64 i64 i32 i32)'
        f' (result i32))) (import "{WASI}" "proc_exit" (func $x (param i32))) {MEMORY}'
        ' (func (export "_start") (call $x (call $f (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0)'
        " (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))))",
        "capability_denied",
        {"exit_code": 2, "message_contains": "stopped after the refusal"},
    ),
    "environment without the capability": (
        # Answered as an empty environment (real programs read it at start-up), denial recorded.
        _calls("environ_get", "(param i32 i32) (result i32)", "(call $f (i32.const 0) (i32.const 0))"),
        "ok",
        {"message_contains": "environ_get"},
    ),
    "socket without the capability": (
        _calls(
            "sock_accept", "(param i32 i32 i32) (result i32)", "(call $f (i32.const 3) (i32.const 0) (i32.const 0))"
        ),
        "ok",
        {"message_contains": "refused with an errno: wasi_snapshot_preview1.sock_accept"},
    ),
    "outbound HTTP without the capability": (
        '(module (import "wcp360" "http_get" (func $f (param i32 i32 i32 i32) (result i32)))'
        f' {MEMORY} (func (export "_start") (drop (call $f (i32.const 0) (i32.const 4) (i32.const 8)'
        " (i32.const 64)))))",
        "capability_denied",
        {},
    ),
    # Blocked inside a host call, where neither fuel nor epochs reach: its worker is killed.
    "hangs its worker": (SLEEPER, "timeout", {"message_contains": "killed"}),
}

SANDBOX_YML = """\
sandbox:
  precompile: false
  workers: 1
  resource_limits:
    max_memory: "8MB"
    max_execution_time: "1s"
    max_table_size: 1000
    max_globals: 100
    max_output: 1024
"""


@pytest.fixture
def config_dir(config_dir: Path) -> Path:
    (config_dir / "sandbox.yml").write_text(SANDBOX_YML)
    return config_dir


def test_every_hostile_module_is_contained_and_the_api_keeps_serving(
    client: TestClient, rt: Runtime, audit_events: CapturingSink
) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    admin = signed_in(client, rt, "boss", ["admin"])
    benign = upload(client, dev, HELLO, "benign")
    violations = metrics.SANDBOX_VIOLATIONS._value.get()
    expected, seen, run_ids = {}, {}, {}
    for name, (source, outcome, extra) in CASES.items():
        module_id = upload(client, dev, source, name.replace(" ", "-"))
        if client.get(f"/api/v1/modules/{module_id}", headers=dev.headers).json()["status"] == "quarantined":
            # Risky enough to quarantine: an administrator releases it, so the sandbox must hold it.
            assert client.post(f"/api/v1/modules/{module_id}/release", headers=admin.headers).status_code == 200
        response = client.post(f"/api/v1/modules/{module_id}/execute", json={}, headers=dev.headers)
        assert response.status_code == 200, (name, response.text)  # a violation is an outcome, never a 5xx
        run = response.json()
        expected[name] = outcome
        seen[name] = run["outcome"]
        run_ids[name] = run["run_id"]
        if "exit_code" in extra:
            assert run["exit_code"] == extra["exit_code"], (name, run)
        if "stdout" in extra:
            assert run["stdout"] == extra["stdout"], name
        if "message_contains" in extra:
            assert str(extra["message_contains"]) in (run["message"] or ""), (name, run)
        # After every case: the API answers and an ordinary module still runs.
        assert client.get("/healthz").status_code == 200, name
        after = client.post(f"/api/v1/modules/{benign}/execute", json={}, headers=dev.headers).json()
        assert (after["outcome"], after["stdout"]) == ("ok", "hello\n"), (name, after)
    assert seen == expected

    contained = [name for name, outcome in expected.items() if outcome not in ("exit", "trap")]  # ok: a denial
    assert metrics.SANDBOX_VIOLATIONS._value.get() - violations == len(contained)
    # Every hostile run is stored with its outcome and audited as module_execute with it.
    for name, run_id in run_ids.items():
        stored = client.get(f"/api/v1/runs/{run_id}", headers=dev.headers).json()
        assert (stored["status"], stored["outcome"]) == ("finished", expected[name]), name
    audited = {e.details["run_id"]: e.details["result"] for e in audit_events.of("module_execute")}
    assert {run_ids[name]: expected[name] for name in CASES}.items() <= audited.items()


GLOBALS_101 = " ".join(f"(global i32 (i32.const {i}))" for i in range(101))


@pytest.mark.parametrize(
    ("source", "words"),
    [
        # wasmtime has no run-time limit on globals: the upload is the only fence.
        (f'(module {GLOBALS_101} (func (export "_start")))', ["101 globals", "resource_limits.max_globals"]),
        # These could never instantiate: refused before anything is stored, not left to fail each run.
        ('(module (memory 1000) (func (export "_start")))', ["65536000 bytes", "resource_limits.max_memory"]),
        ('(module (table 5000 funcref) (func (export "_start")))', ["5000 elements", "resource_limits.max_table_size"]),
        ('(module (import "env" "t" (table 5000 funcref)))', ["5000 elements", "resource_limits.max_table_size"]),
    ],
    ids=["globals", "initial memory", "initial table", "imported table"],
)
def test_a_module_beyond_the_limits_never_reaches_a_worker(
    client: TestClient, rt: Runtime, source: str, words: list[str]
) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    refused = client.post(
        "/api/v1/modules?name=big", content=bytes(wasmtime.wat2wasm(source)), headers={**dev.headers, **WASM}
    )
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    detail = refused.json()["detail"]
    assert all(word in detail for word in words) and "sandbox.yml" in detail, detail
    assert client.get("/api/v1/modules", headers=dev.headers).json()["total"] == 0
    assert not list((rt.config.data_dir / "modules").rglob("*"))


def test_at_the_limits_is_fine(client: TestClient, rt: Runtime) -> None:
    dev = signed_in(client, rt, "dev", ["developer"])
    at_limit = " ".join(f"(global i32 (i32.const {i}))" for i in range(100))
    upload(client, dev, bytes(wasmtime.wat2wasm(f'(module {at_limit} (func (export "_start")))')), "globals")
    sizes = '(module (table 1000 funcref) (memory 122) (func (export "_start")))'  # 122 pages < 8 MB
    upload(client, dev, bytes(wasmtime.wat2wasm(sizes)), "sizes")
