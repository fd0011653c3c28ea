"""Cranelift's optimisation level: what it saves at compile time and costs at run time.

    .venv/bin/python benchmarks/bench_cranelift.py [--rounds 3] [--module yosys.wasm]

Both engines carry the sandbox's instrumentation (fuel, epoch interruption), as workers do; only
`cranelift_opt_level` differs: "speed" (wasmtime's default, what WCP360 uses) and "none".
- compile: `wasmtime.Module(engine, bytes)` of a large module (yosys, 69 MB, or the generated
  33 MB module of bench_analysis.py when none is given);
- run: a CPU-bound module (a 96x96 integer matrix product, 40 times: nested loops, a helper
  call per operand address, loads and stores), instantiated once per round.
Medians of the rounds, alternating the two settings.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import wasmtime
from bench_analysis import build

# A 96x96 integer matrix product, repeated: nested loops, address arithmetic and loads/stores,
# where an optimising compiler has work to do (hoisting, value numbering, folding addresses).
CPU_BOUND = """(module
  (memory 2)
  (func $at (param $m i32) (param $r i32) (param $c i32) (result i32)
    (i32.add (local.get $m) (i32.shl (i32.add (i32.mul (local.get $r) (i32.const 96)) (local.get $c)) (i32.const 2))))
  (func (export "spin") (param $n i32) (result i32)
    (local $k i32) (local $i i32) (local $j i32) (local $x i32) (local $sum i32) (local $round i32)
    (loop $fill
      (i32.store (i32.shl (local.get $i) (i32.const 2)) (i32.xor (local.get $i) (i32.const 0x5bd1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 18432))))
    (loop $rounds
      (local.set $i (i32.const 0))
      (loop $rows
        (local.set $j (i32.const 0))
        (loop $cols
          (local.set $sum (i32.const 0))
          (local.set $k (i32.const 0))
          (loop $inner
            (local.set $sum (i32.add (local.get $sum)
              (i32.mul (i32.load (call $at (i32.const 0) (local.get $i) (local.get $k)))
                       (i32.load (call $at (i32.const 36864) (local.get $k) (local.get $j))))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br_if $inner (i32.lt_u (local.get $k) (i32.const 96))))
          (i32.store (call $at (i32.const 73728) (local.get $i) (local.get $j)) (local.get $sum))
          (local.set $x (i32.add (local.get $x) (local.get $sum)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $cols (i32.lt_u (local.get $j) (i32.const 96))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $i) (i32.const 96))))
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br_if $rounds (i32.lt_u (local.get $round) (local.get $n))))
    (local.get $x)))"""
ITERATIONS = 40  # rounds of the 96x96 product (35 million multiply-adds)


def engine(opt_level: str) -> wasmtime.Engine:
    settings = wasmtime.Config()
    settings.consume_fuel = True
    settings.epoch_interruption = True
    settings.cranelift_opt_level = opt_level
    return wasmtime.Engine(settings)


def compile_seconds(opt_level: str, raw: bytes) -> float:
    started = time.perf_counter()
    wasmtime.Module(engine(opt_level), raw)
    return time.perf_counter() - started


def run_seconds(opt_level: str) -> float:
    chosen = engine(opt_level)
    store = wasmtime.Store(chosen)
    store.set_fuel(10**12)
    store.set_epoch_deadline(10**9)
    instance = wasmtime.Instance(store, wasmtime.Module(chosen, CPU_BOUND), [])
    spin = instance.exports(store)["spin"]
    assert isinstance(spin, wasmtime.Func)
    started = time.perf_counter()
    spin(store, ITERATIONS)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--module", type=Path)
    args = parser.parse_args()
    raw = args.module.read_bytes() if args.module else build(30)
    compiled: dict[str, list[float]] = {"speed": [], "none": []}
    ran: dict[str, list[float]] = {"speed": [], "none": []}
    for _ in range(args.rounds):
        for level in ("speed", "none"):
            compiled[level].append(compile_seconds(level, raw))
            ran[level].append(run_seconds(level))
    for level in ("speed", "none"):
        print(
            f"opt_level {level:5}: compile {statistics.median(compiled[level]):.2f} s "
            f"({len(raw) / 1e6:.1f} MB), CPU-bound run {statistics.median(ran[level]):.3f} s"
        )
    print(
        f"none vs speed: compile {statistics.median(compiled['none']) / statistics.median(compiled['speed']):.2f}x, "
        f"run {statistics.median(ran['none']) / statistics.median(ran['speed']):.2f}x"
    )


if __name__ == "__main__":
    main()
