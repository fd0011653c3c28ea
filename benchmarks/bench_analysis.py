"""Static analysis throughput on a large module, beside wasmtime's validation of the same bytes.

    uv run python benchmarks/bench_analysis.py [--megabytes 30]

The module is generated: many functions, each with a counted loop (so every body is walked
instruction by instruction, the worst case for the analyser), arithmetic, loads and stores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import wasmtime

from wcp360.config.sandbox import Capabilities
from wcp360.config.static_analysis import StaticAnalysisConfig
from wcp360.workloads.engine.analysis import analyse


def leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + leb(len(payload)) + payload


def function_body(seed: int, statements: int) -> bytes:
    # (local i32) block loop br_if(out when local==0) ... local = local - 1 ... br 0 end end
    code = bytearray([0x01, 0x01, 0x7F])  # one local of type i32
    code += bytes([0x02, 0x40, 0x03, 0x40])  # block, loop
    code += bytes([0x20, 0x00, 0x45, 0x0D, 0x01])  # local.get 0, i32.eqz, br_if 1
    for i in range(statements):
        code += bytes([0x41]) + leb((seed * 31 + i) & 0x3FFF)  # i32.const
        code += bytes([0x28, 0x02, 0x00])  # i32.load align=2 offset=0
        code += bytes([0x41]) + leb(i & 0x3F) + bytes([0x6A])  # i32.const, i32.add
        code += bytes([0x1A])  # drop
    code += bytes([0x20, 0x00, 0x41, 0x01, 0x6B, 0x21, 0x00])  # local = local - 1
    code += bytes([0x0C, 0x00, 0x0B, 0x0B, 0x0B])  # br 0, end loop, end block, end function
    return leb(len(code)) + bytes(code)


def build(megabytes: float) -> bytes:
    body = function_body(1, 40)
    count = int(megabytes * 1e6 / len(body)) + 1
    types = leb(1) + bytes([0x60, 0x00, 0x00])
    functions = leb(count) + bytes([0x00]) * count
    memory = leb(1) + bytes([0x01, 0x01, 0x10])  # 1 page, maximum 16
    bodies = b"".join(function_body(i, 40) for i in range(count))
    return (
        b"\0asm\x01\0\0\0"
        + section(1, types)
        + section(3, functions)
        + section(5, memory)
        + section(10, leb(count) + bodies)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--module", type=Path, help="analyse this .wasm instead (e.g. yosys.wasm)")
    args = parser.parse_args()
    raw = args.module.read_bytes() if args.module else build(args.megabytes)
    engine = wasmtime.Engine()
    validate, analysis = [], []
    result = None
    for _ in range(args.rounds):
        started = time.perf_counter()
        wasmtime.Module.validate(engine, raw)
        validate.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = analyse(raw, StaticAnalysisConfig(), Capabilities())
        analysis.append(time.perf_counter() - started)
    assert result is not None
    size_mb = len(raw) / 1e6
    print(
        json.dumps(
            {
                "module_mb": round(size_mb, 1),
                "functions": result.info.functions,
                "findings": len(result.findings),
                "wasmtime_validate_s": round(statistics.median(validate), 2),
                "analysis_s": round(statistics.median(analysis), 2),
                "analysis_mb_per_s": round(size_mb / statistics.median(analysis), 1),
                "ratio_to_validation": round(statistics.median(analysis) / statistics.median(validate), 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
