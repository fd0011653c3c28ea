"""Upload to first finished execution of a large module, beside a fresh compile of it, same run.

    uv run python benchmarks/bench_workloads.py [--megabytes 30]

A real server process (SQLite, two workers, ahead-of-time compile on) receives the generated module
(bench_analysis.build with an exported `_start`), then the same client executes it. Reported:
upload time (validation + analysis + storage), time until the first execution has finished, and,
for comparison, wasmtime compiling the same bytes fresh and deserializing the compiled artifact.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from pathlib import Path

import wasmtime
from bench_analysis import build, leb, section
from common import wcp360_server

PASSWORD = "Quiet!Harbour#2026x"
# Off: execute right after the upload returns (the server waits for its own compile).
WAIT_FOR_ARTIFACT = os.environ.get("WAIT_FOR_ARTIFACT", "1") == "1"


def with_start(megabytes: float) -> bytes:
    raw = build(megabytes)
    # Append an export section naming function 0 `_start` (its loop counts down from 0: exits at once).
    export = section(7, leb(1) + leb(6) + b"_start" + bytes([0x00]) + leb(0))
    return raw[:8] + _before_code(raw[8:], export)


def _before_code(body: bytes, insert: bytes) -> bytes:
    # Sections are in id order; the export section (7) goes before the code section (10).
    position = 0
    while position < len(body):
        section_id = body[position]
        size, length = 0, 0
        shift = 0
        while True:
            byte = body[position + 1 + length]
            size |= (byte & 0x7F) << shift
            length += 1
            shift += 7
            if byte < 0x80:
                break
        if section_id == 10:
            return body[:position] + insert + body[position:]
        position += 1 + length + size
    return body + insert


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=30)
    args = parser.parse_args()
    raw = with_start(args.megabytes)
    engine = wasmtime.Engine()
    started = time.perf_counter()
    compiled = wasmtime.Module(engine, raw)
    compile_s = time.perf_counter() - started
    artifact = compiled.serialize()
    started = time.perf_counter()
    wasmtime.Module.deserialize(engine, artifact)
    deserialize_s = time.perf_counter() - started
    # The fair baseline: the same bytes on the workers' own engine settings (fuel, epochs).
    from wcp360.config.sandbox import SandboxConfig
    from wcp360.workloads.engine.sandbox import make_engine

    started = time.perf_counter()
    wasmtime.Module(make_engine(SandboxConfig()), raw)
    sandbox_compile_s = time.perf_counter() - started
    with (
        tempfile.TemporaryDirectory() as scratch,
        wcp360_server(Path(scratch), {}, "runner", PASSWORD) as (
            port,
            token,
        ),
    ):
        auth = {"Authorization": f"Bearer {token}"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        started = time.perf_counter()
        conn.request("POST", "/api/v1/modules?name=big", body=raw, headers={**auth, "Content-Type": "application/wasm"})
        uploaded = json.loads(conn.getresponse().read())
        upload_s = time.perf_counter() - started
        tag = Path(scratch) / "data" / "workers" / "compiled" / f"{uploaded['digest']}.tag"
        while WAIT_FOR_ARTIFACT and not tag.exists() and time.perf_counter() - started < 600:
            time.sleep(0.05)
        compiled_s = time.perf_counter() - started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)  # the idle one was closed
        conn.request("GET", f"/api/v1/modules/{uploaded['id']}", headers=auth)
        # The compile job as the server timed it (from handing it to a worker to its answer).
        server_compile_s = json.loads(conn.getresponse().read())["compile"]["seconds"]
        execute = f"/api/v1/modules/{uploaded['id']}/execute"
        conn.request("POST", execute, body=b"{}", headers={**auth, "Content-Type": "application/json"})
        first = json.loads(conn.getresponse().read())
        first_s = time.perf_counter() - started
        second_started = time.perf_counter()
        conn.request("POST", execute, body=b"{}", headers={**auth, "Content-Type": "application/json"})
        second = json.loads(conn.getresponse().read())
        second_s = time.perf_counter() - second_started
    print(
        json.dumps(
            {
                "module_mb": round(len(raw) / 1e6, 1),
                "status": uploaded.get("status"),
                "wasmtime_fresh_compile_s": round(compile_s, 2),
                "sandbox_engine_compile_s": round(sandbox_compile_s, 2),
                "wasmtime_deserialize_s": round(deserialize_s, 2),
                "upload_s": round(upload_s, 2),
                "compiled_after_upload_start_s": round(compiled_s, 2),
                "server_compile_job_s": server_compile_s,
                "upload_to_first_finished_execution_s": round(first_s, 2),
                "ratio_to_sandbox_engine_compile": round(first_s / sandbox_compile_s, 2),
                "first_outcome": first.get("outcome"),
                "second_execution_s": round(second_s, 3),
                "second_outcome": second.get("outcome"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
