"""Hostile modules in the sandbox: every case is contained and named with its typed outcome."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import wasmtime

from wcp360.config.sandbox import Capabilities, ModuleCapabilities, ResourceLimits, SandboxConfig, SandboxPolicy
from wcp360.workloads.engine.sandbox import EpochTicker, RunResult, Templates, make_engine, run

CONFIG = SandboxConfig(
    resource_limits=ResourceLimits(
        max_memory=8 * 1024 * 1024, max_execution_time=timedelta(seconds=2), max_output=1024, max_table_size=1000
    )
)
WASI = "wasi_snapshot_preview1"
EXIT = f'(import "{WASI}" "proc_exit" (func $exit (param i32)))'
WRITE = f'(import "{WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))'


@pytest.fixture(scope="module")
def engine() -> Iterator[wasmtime.Engine]:
    built = make_engine(CONFIG)
    ticker = EpochTicker(built)
    yield built
    ticker.stop()


def go(
    engine: wasmtime.Engine,
    source: str | bytes,
    config: SandboxConfig = CONFIG,
    capabilities: Capabilities | None = None,
    **options: object,
) -> RunResult:
    return run(engine, wasmtime.Module(engine, source), config, capabilities or Capabilities(), **options)  # type: ignore[arg-type]


def test_real_c_program_runs_with_args_and_stdin(engine: wasmtime.Engine, c_program: bytes) -> None:
    big = CONFIG.model_copy(
        update={"resource_limits": CONFIG.resource_limits.model_copy(update={"max_memory": 64 * 1024 * 1024})}
    )
    result = go(engine, c_program, big, args=["x", "y"], stdin=b"40\n2\n")
    assert result.outcome == "ok" and result.exit_code == 0
    assert result.stdout == b"sum=42 args=3 last=57\n"
    assert result.fuel_used > 0 and result.memory_peak_bytes > 1024 * 1024


def test_infinite_loop_runs_out_of_fuel(engine: wasmtime.Engine) -> None:
    result = go(engine, '(module (func (export "_start") (loop $l (br $l))))')
    assert result.outcome == "out_of_fuel"


def test_infinite_loop_with_a_big_budget_times_out(engine: wasmtime.Engine) -> None:
    generous = CONFIG.model_copy(
        update={
            "policies": [SandboxPolicy(name="no_infinite_loops", max_iterations=10**14)],
            "resource_limits": CONFIG.resource_limits.model_copy(update={"max_execution_time": timedelta(seconds=0.3)}),
        }
    )
    result = go(engine, '(module (func (export "_start") (loop $l (br $l))))', generous)
    assert result.outcome == "timeout" and result.duration_ms < 5000


def test_memory_bomb(engine: wasmtime.Engine) -> None:
    bomb = (
        '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br_if $l (i32.ne '
        "(memory.grow (i32.const 1)) (i32.const -1)))) unreachable))"
    )
    result = go(engine, bomb)
    assert result.outcome == "memory_limit" and result.memory_peak_bytes <= 8 * 1024 * 1024


def test_initial_memory_above_the_limit(engine: wasmtime.Engine) -> None:
    assert go(engine, '(module (memory 1000) (func (export "_start")))').outcome == "memory_limit"


def test_deep_recursion(engine: wasmtime.Engine) -> None:
    assert go(engine, '(module (func $r (export "_start") (call $r)))').outcome == "stack_overflow"


def test_table_growth(engine: wasmtime.Engine) -> None:
    assert go(engine, '(module (table 5000 funcref) (func (export "_start")))').outcome == "table_limit"
    grower = (
        '(module (table 1 funcref) (func (export "_start") (loop $l (br_if $l (i32.ne '
        "(table.grow (ref.null func) (i32.const 100)) (i32.const -1)))) unreachable))"
    )
    result = go(engine, grower)
    assert result.outcome == "trap"  # table.grow was refused at max_table_size; the module gave up


def test_proc_exit_code(engine: wasmtime.Engine) -> None:
    source = f'(module {EXIT} (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 3))))'
    result = go(engine, source)
    assert result.outcome == "exit" and result.exit_code == 3


def test_output_flood_is_capped(engine: wasmtime.Engine) -> None:
    # iovec at 0: {ptr=16, len=512}; write it forever to stdout.
    flood = (
        f'(module {WRITE} (memory (export "memory") 1) (data (i32.const 0) "\\10\\00\\00\\00\\00\\02\\00\\00")'
        ' (func (export "_start") (local i32) (loop $l (local.set 0 (call $write (i32.const 1) (i32.const 0)'
        " (i32.const 1) (i32.const 8))) (br_if $l (i32.eqz (local.get 0))))))"
    )
    result = go(engine, flood)
    assert result.outcome == "output_limit" and len(result.stdout) == 1024


DENIABLE = [
    (
        "path_open",
        "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
        "(call $f (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0)"
        " (i64.const 0) (i32.const 0) (i32.const 0))",
        2,  # EACCES
    ),
    ("sock_accept", "(param i32 i32 i32) (result i32)", "(call $f (i32.const 3) (i32.const 0) (i32.const 0))", 76),
    (
        "fd_readdir",
        "(param i32 i32 i32 i64 i32) (result i32)",
        "(call $f (i32.const 3) (i32.const 0) (i32.const 0) (i64.const 0) (i32.const 0))",
        2,
    ),
]


@pytest.mark.parametrize(("function", "signature", "call", "errno"), DENIABLE)
def test_a_refusal_is_an_errno_a_program_can_handle(
    engine: wasmtime.Engine, function: str, signature: str, call: str, errno: int
) -> None:
    """A program that handles the refusal goes on (`ok`); the refusal is named in the run."""
    source = (
        f'(module (import "{WASI}" "{function}" (func $f {signature})) (memory (export "memory") 1)'
        f' (func (export "_start") (drop {call})))'
    )
    result = go(engine, source)
    assert result.outcome == "ok" and result.denied == [f"{WASI}.{function}"]
    assert f"refused with an errno: {WASI}.{function}" in (result.message or "")


@pytest.mark.parametrize(("function", "signature", "call", "errno"), DENIABLE)
def test_a_program_that_stops_after_a_refusal_is_capability_denied(
    engine: wasmtime.Engine, function: str, signature: str, call: str, errno: int
) -> None:
    """It exits with the errno it got (EACCES for files, ENOTCAPABLE otherwise)."""
    source = (
        f'(module (import "{WASI}" "{function}" (func $f {signature})) {EXIT} (memory (export "memory") 1)'
        f' (func (export "_start") (call $exit {call})))'
    )
    result = go(engine, source)
    assert (result.outcome, result.exit_code) == ("capability_denied", errno)
    assert function in (result.message or "") and f"exit status {errno}" in (result.message or "")


def test_without_the_capability_a_program_sees_an_empty_environment(engine: wasmtime.Engine) -> None:
    # Every wasi-libc program reads its environment at start-up: a trap there ended real programs
    # before main. Without environment_access the answer is an empty environment, and the denial
    # is still recorded (audited and counted by the executor).
    source = (
        f'(module (import "{WASI}" "environ_sizes_get" (func $f (param i32 i32) (result i32))) {EXIT}'
        ' (memory (export "memory") 1) (data (i32.const 0) "\\07\\00\\00\\00")'
        ' (func (export "_start") (drop (call $f (i32.const 0) (i32.const 4)))'
        " (call $exit (i32.add (i32.const 10) (i32.load (i32.const 0))))))"
    )
    result = go(engine, source, env={"SECRET": "never seen"})
    assert (result.outcome, result.exit_code) == ("exit", 10)  # zero variables, not the 7 planted
    assert result.denied == [f"{WASI}.environ_sizes_get"] and "environ_sizes_get" in (result.message or "")


def test_environment_only_with_the_capability(engine: wasmtime.Engine) -> None:
    # environ_sizes_get writes the count at 0: read it back through the exit code.
    source = (
        f'(module (import "{WASI}" "environ_sizes_get" (func $f (param i32 i32) (result i32))) {EXIT}'
        ' (memory (export "memory") 1) (func (export "_start") (drop (call $f (i32.const 0) (i32.const 4)))'
        " (call $exit (i32.add (i32.const 10) (i32.load (i32.const 0))))))"
    )
    result = go(engine, source, capabilities=Capabilities(environment_access=True), env={"A": "1", "B": "2"})
    assert result.outcome == "exit" and result.exit_code == 12


def test_a_worker_s_pre_linked_module_is_linked_per_capability_set(engine: wasmtime.Engine) -> None:
    """Workers keep each module pre-linked (Templates): a link made for one grant must never serve
    another, and one run's refusals must not be counted in the next run."""
    source = (
        f'(module (import "{WASI}" "environ_sizes_get" (func $f (param i32 i32) (result i32))) {EXIT}'
        ' (memory (export "memory") 1) (data (i32.const 0) "\\07\\00\\00\\00")'
        ' (func (export "_start") (drop (call $f (i32.const 0) (i32.const 4)))'
        " (call $exit (i32.add (i32.const 10) (i32.load (i32.const 0))))))"
    )
    module, templates = wasmtime.Module(engine, source), Templates(engine)
    granted, env = Capabilities(environment_access=True), {"A": "1", "B": "2"}
    runs = [
        run(engine, module, CONFIG, capabilities, env=env, templates=templates)
        for capabilities in (Capabilities(), granted, Capabilities(), granted, Capabilities())
    ]
    assert [(r.exit_code, r.denied) for r in runs] == [
        (10, [f"{WASI}.environ_sizes_get"]),
        (12, []),
        (10, [f"{WASI}.environ_sizes_get"]),
        (12, []),
        (10, [f"{WASI}.environ_sizes_get"]),
    ]
    # A module the worker drops takes its links with it (they would keep its compiled code alive).
    templates.forget(module)
    assert run(engine, module, CONFIG, granted, env=env, templates=templates).exit_code == 12
    templates.forget(module)
    assert not templates._cache


def _open_source(path: str) -> str:
    # path_open(dirfd 3 = the first preopen, path at 100) and exit with the WASI errno it returned.
    return (
        f'(module (import "{WASI}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32)'
        f' (result i32))) {EXIT} (memory (export "memory") 1) (data (i32.const 100) "{path}")'
        ' (func (export "_start") (call $exit (call $open (i32.const 3) (i32.const 0) (i32.const 100)'
        f" (i32.const {len(path)}) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))))"
    )


@pytest.mark.parametrize("escape", ["../../etc/passwd", "/etc/passwd", "link-out/passwd"])
def test_preopen_is_the_only_reachable_directory(engine: wasmtime.Engine, tmp_path: Path, escape: str) -> None:
    (tmp_path / "inside.txt").write_text("ok")
    (tmp_path / "link-out").symlink_to("/etc")  # a symlink pointing out of the preopen
    grants = ModuleCapabilities(file_access=True, allowed_paths=[tmp_path])
    granted = Capabilities(file_access=True)
    inside = go(engine, _open_source("inside.txt"), capabilities=granted, grants=grants)
    assert inside.outcome == "ok" and inside.exit_code == 0
    refused = go(engine, _open_source(escape), capabilities=granted, grants=grants)
    assert refused.outcome == "exit" and refused.exit_code in (63, 76)  # WASI EPERM / ENOTCAPABLE


def test_missing_entry_point(engine: wasmtime.Engine) -> None:
    result = go(engine, '(module (func (export "main")))')
    assert result.outcome == "trap" and "_start" in (result.message or "")


def test_every_limit_names_the_key_that_set_it(engine: wasmtime.Engine) -> None:
    spin = '(module (func (export "_start") (loop $l (br $l))))'
    seed = go(engine, spin)
    assert seed.outcome == "out_of_fuel"
    assert "sandbox.yml policies[no_infinite_loops].max_iterations" in (seed.message or "")
    # One named budget beside the seed's policy: resource_limits.max_fuel wins when set.
    named = CONFIG.model_copy(update={"resource_limits": CONFIG.resource_limits.model_copy(update={"max_fuel": 5000})})
    result = go(engine, spin, named)
    assert result.outcome == "out_of_fuel" and result.fuel_used == 5000
    assert "5000 fuel units" in (result.message or "") and "resource_limits.max_fuel" in (result.message or "")
    recursion = '(module (func $f (call $f)) (func (export "_start") (call $f)))'
    assert "resource_limits.max_stack_depth" in (go(engine, recursion).message or "")


@pytest.mark.parametrize("level", ["none", "speed_and_size"])
def test_every_cranelift_level_keeps_the_fences(level: str, c_program: bytes) -> None:
    """sandbox.yml cranelift_opt_level changes the code, never the limits: the real program runs
    alike, and an endless loop still runs out of fuel."""
    config = CONFIG.model_copy(
        update={
            "cranelift_opt_level": level,
            "resource_limits": CONFIG.resource_limits.model_copy(update={"max_memory": 64 * 1024 * 1024}),
        }
    )
    built = make_engine(config)
    ticker = EpochTicker(built)
    try:
        result = go(built, c_program, config, args=["x", "y"], stdin=b"40\n2\n")
        assert result.outcome == "ok" and result.stdout == b"sum=42 args=3 last=57\n"
        endless = go(built, '(module (func (export "_start") (loop (br 0))))', config)
        assert endless.outcome == "out_of_fuel"
    finally:
        ticker.stop()
