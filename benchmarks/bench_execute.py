"""Executing a trivial module: the full API pipeline beside a bare endpoint and raw wasmtime, same run.

    uv run python benchmarks/bench_execute.py [--requests 400] [--rounds 3] [--clients 1 32]

- full: POST /api/v1/modules/{id}/execute with a bearer token: authentication, rate limits (on,
  set high enough never to refuse), the policy function, the module lookup, the worker pool, the
  stored run and the audit event.
- bare: an endpoint in the same server that hands the same job to the same worker pool and returns
  the outcome: no authentication, audit, limits or database.
- raw: the same module instantiated and called by wasmtime in this process (a fresh store and
  WASI context per call, as the sandbox does), no process boundary at all.

Rounds alternate bare and full so drift on a shared machine hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import wasmtime
from common import Result, free_port, load, medians, start_server, wait_ready, write_config

PASSWORD = "Quiet!Harbour#2026x"
# A WASI command that writes "hello\n": the smallest module that goes through a host call.
MODULE = """(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1) (data (i32.const 16) "hello\\n") (data (i32.const 0) "\\10\\00\\00\\00\\06\\00\\00\\00")
  (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
# One account drives every client here: its run limit is lifted (the pipeline, not the fairness
# between accounts, is measured; bench_fairness.py measures that).
FILES = {"sandbox.yml": 'sandbox:\n  workers: 2\n  max_concurrent_runs_per_user: 64\n  max_worker_wait: "300s"\n'}


def open_runtime(data_dir: str) -> Any:
    from wcp360.config import load_config
    from wcp360.logs import configure_logging
    from wcp360.runtime import Runtime

    configure_logging("warning")
    return Runtime.open(load_config(Path(data_dir) / "etc", Path(data_dir) / "data", env={}))


def serve(port: int, data_dir: str) -> None:
    import uvicorn

    from wcp360.api.app import create_app
    from wcp360.audit.setup import trail_scope
    from wcp360.workloads.engine.workers import Job

    rt = open_runtime(data_dir)
    app = create_app(rt)

    @app.post("/bench/execute/{digest}")
    def bare(digest: str) -> dict[str, Any]:
        result = rt.executor.pool.execute(Job(digest))
        return {"outcome": result.outcome, "stdout": result.stdout.decode()}

    with trail_scope(rt.config, rt.db, forward=False):
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, server_header=False)


def prepare(data_dir: str) -> tuple[str, str, str]:
    from wcp360.authz import Principal

    write_config(Path(data_dir) / "etc", FILES)
    rt = open_runtime(data_dir)
    user = rt.users.create(Principal.host_admin(), "bench", "bench@example.test", PASSWORD, ["developer"])
    token = rt.auth.login("bench", PASSWORD).access_token
    owner = Principal(uuid.UUID(user.id), "bench", ("developer",), via="session")
    module = rt.modules.upload(owner, "hello", MODULE.encode(), text_format=True)
    rt.close()
    return token, module.id, module.digest


def raw_wasmtime(requests: int, clients: int) -> Result:
    """The floor: compile once, then per call a fresh store, WASI context, instance and call."""
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, MODULE)
    latencies: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = lambda chunk: len(chunk)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        start = linker.instantiate(store, module).exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)

    def worker(count: int) -> None:
        mine = []
        for _ in range(count):
            started = time.perf_counter()
            one()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    per_client = requests // clients
    threads = [threading.Thread(target=worker, args=(per_client,)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result("raw", per_client * clients, time.perf_counter() - started, latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        token, module_id, digest = prepare(data_dir)
        port = free_port()
        server = start_server(serve, port, data_dir, daemon=False)
        try:
            wait_ready(port)
            full_path, bare_path = f"/api/v1/modules/{module_id}/execute", f"/bench/execute/{digest}"
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            report: dict[str, Any] = {"runs": []}
            for clients in args.clients:
                load(port, bare_path, {}, 64, min(clients, 8), "warmup", "POST", b"")
                load(port, full_path, auth, 64, min(clients, 8), "warmup", "POST", b"{}")
                bare, full, raw = [], [], []
                for _ in range(args.rounds):
                    bare.append(load(port, bare_path, {}, args.requests, clients, "bare", "POST", b""))
                    full.append(load(port, full_path, auth, args.requests, clients, "full", "POST", b"{}"))
                    raw.append(raw_wasmtime(args.requests, clients))
                row: dict[str, Any] = {"clients": clients}
                for name, results in (("raw", raw), ("bare", bare), ("full", full)):
                    row.update({f"{name}_{key}": value for key, value in medians(results).items()})
                row["p50_ratio_full_bare"] = round(row["full_p50_ms"] / row["bare_p50_ms"], 2)
                row["p99_ratio_full_bare"] = round(row["full_p99_ms"] / row["bare_p99_ms"], 2)
                row["throughput_ratio_bare_full"] = round(row["bare_rps"] / row["full_rps"], 2)
                row["p50_ratio_bare_raw"] = round(row["bare_p50_ms"] / row["raw_p50_ms"], 2)
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
            print(json.dumps(report, indent=2))
        finally:
            server.terminate()
            server.join(10)


if __name__ == "__main__":
    main()
