"""Running one module in the wasmtime sandbox with the limits of `sandbox.yml`, and naming the outcome.

Limits: memory and table sizes (StoreLimits), an instruction budget (fuel), wall-clock time (epoch
interruption, ticked by a timer thread), stack size (max_wasm_stack), capped stdout/stderr.
Capabilities are all off unless granted; a WASI function that needs one the module lacks is
replaced at link time by a stub that traps, so using it ends the run as `capability_denied`.

This is the in-process core; the worker processes that isolate it from the API (seccomp,
landlock, a hard kill as the last fence) are the next step of the workloads issue.
"""

from __future__ import annotations

import errno
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import wasmtime

from wcp360.config.sandbox import Capabilities, ModuleCapabilities, SandboxConfig
from wcp360.workloads.analysis import NEEDS_CAPABILITY, WASI

Outcome = Literal[
    "ok",
    "exit",
    "out_of_fuel",
    "timeout",
    "memory_limit",
    "stack_overflow",
    "table_limit",
    "capability_denied",
    "trap",
    "output_limit",
]
# Outcomes that mean a sandbox limit or capability stopped the module (sandbox_violations_total).
VIOLATIONS = frozenset(
    {"out_of_fuel", "timeout", "memory_limit", "stack_overflow", "table_limit", "capability_denied", "output_limit"}
)
EPOCH_TICK = 0.01  # seconds per epoch
PAGE = 64 * 1024
# Roughly ten instructions per loop iteration of the seed's `no_infinite_loops.max_iterations`.
FUEL_PER_ITERATION = 10
_DENIED = "capability denied: "


@dataclass
class RunResult:
    outcome: Outcome
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    duration_ms: float = 0.0
    fuel_used: int = 0
    memory_peak_bytes: int = 0
    message: str | None = None


@dataclass
class _Capped:
    limit: int
    data: bytearray = field(default_factory=bytearray)
    overflowed: bool = False

    def write(self, chunk: bytes) -> int:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(0, room)]
            self.overflowed = True
            return -errno.EFBIG  # the guest's write fails; the run is reported as output_limit
        self.data += chunk
        return len(chunk)


def make_engine(config: SandboxConfig) -> wasmtime.Engine:
    settings = wasmtime.Config()
    settings.consume_fuel = True
    settings.epoch_interruption = True
    # max_stack_depth counts frames; give each about 1 KiB of native stack.
    settings.max_wasm_stack = max(64 * 1024, config.resource_limits.max_stack_depth * 1024)
    return wasmtime.Engine(settings)


class EpochTicker:
    """One thread per engine advancing the epoch; a store's deadline is counted in ticks."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasm-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(EPOCH_TICK):
            self.engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()


def fuel_budget(config: SandboxConfig) -> int:
    for policy in config.policies:
        if policy.name == "no_infinite_loops" and policy.enabled and policy.max_iterations:
            return policy.max_iterations * FUEL_PER_ITERATION
    return 10**12  # no policy: effectively unlimited, the time limit still applies


def run(
    engine: wasmtime.Engine,
    module: wasmtime.Module,
    config: SandboxConfig,
    capabilities: Capabilities,
    grants: ModuleCapabilities | None = None,
    args: list[str] | None = None,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    entry: str = "_start",
) -> RunResult:
    limits = config.resource_limits
    store = wasmtime.Store(engine)
    store.set_limits(
        memory_size=limits.max_memory, table_elements=limits.max_table_size, instances=4, tables=4, memories=1
    )
    fuel = fuel_budget(config)
    store.set_fuel(fuel)
    store.set_epoch_deadline(max(1, math.ceil(limits.max_execution_time.total_seconds() / EPOCH_TICK)))
    stdout, stderr = _Capped(limits.max_output), _Capped(limits.max_output)
    with tempfile.NamedTemporaryFile() as stdin_file:
        stdin_file.write(stdin)
        stdin_file.flush()
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["module", *(args or [])]
        wasi.env = list((env or {}).items()) if capabilities.environment_access else []
        wasi.stdin_file = stdin_file.name
        wasi.stdout_custom = stdout.write
        wasi.stderr_custom = stderr.write
        if capabilities.file_access and grants is not None:
            writable = {str(p) for p in grants.writable_paths}
            for path in grants.allowed_paths:
                wasi.preopen_dir(str(path), str(path), str(path) in writable)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        _deny_missing_capabilities(linker, store, module, capabilities)
        started = time.perf_counter()
        result = _execute(linker, store, module, entry, limits.max_memory)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    result.fuel_used = fuel - store.get_fuel()
    result.stdout, result.stderr = bytes(stdout.data), bytes(stderr.data)
    if result.outcome in ("ok", "exit") and (stdout.overflowed or stderr.overflowed):
        result.outcome = "output_limit"
    return result


def _deny_missing_capabilities(
    linker: wasmtime.Linker, store: wasmtime.Store, module: wasmtime.Module, capabilities: Capabilities
) -> None:
    linker.allow_shadowing = True
    for item in module.imports:
        name = item.name or ""
        if item.module not in WASI or not isinstance(item.type, wasmtime.FuncType):
            continue
        needed = next((cap for cap, prefixes in NEEDS_CAPABILITY.items() if name.startswith(prefixes)), None)
        if needed is not None and not getattr(capabilities, needed):
            message = f"{_DENIED}{item.module}.{name} needs {needed}"

            def deny(*_: object, _message: str = message) -> None:
                raise wasmtime.Trap(_message)

            linker.define_func(item.module, name, item.type, deny)


def _execute(
    linker: wasmtime.Linker, store: wasmtime.Store, module: wasmtime.Module, entry: str, memory_limit: int
) -> RunResult:
    memory_peak = 0
    instance = None
    try:
        instance = linker.instantiate(store, module)
        function = instance.exports(store).get(entry)
        if not isinstance(function, wasmtime.Func):
            return RunResult("trap", message=f"the module exports no function {entry!r}")
        function(store)
        outcome: RunResult = RunResult("ok", exit_code=0)
    except wasmtime.ExitTrap as exit_trap:
        code = getattr(exit_trap, "code", 1)
        outcome = RunResult("ok" if code == 0 else "exit", exit_code=code)
    except wasmtime.Trap as trap:
        outcome = _classify_trap(trap)
    except wasmtime.WasmtimeError as error:
        outcome = _classify_instantiation(error)
    if instance is not None:
        memory = instance.exports(store).get("memory")
        if isinstance(memory, wasmtime.Memory):
            memory_peak = memory.data_len(store)
    outcome.memory_peak_bytes = memory_peak
    # A module that dies after memory.grow was refused at the limit ran out of memory, whatever
    # trap it then chose (unreachable, a failed allocation's abort, a bad access).
    if outcome.outcome in ("trap", "out_of_fuel") and memory_limit - memory_peak < PAGE and memory_peak:
        outcome.outcome, outcome.message = "memory_limit", f"memory reached max_memory ({memory_limit} bytes)"
    return outcome


def _classify_trap(trap: wasmtime.Trap) -> RunResult:
    message = str(trap).splitlines()[0] if str(trap) else "trap"
    code = trap.trap_code
    if _DENIED in str(trap):
        return RunResult("capability_denied", message=str(trap).split(_DENIED, 1)[1].splitlines()[0])
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return RunResult("out_of_fuel", message="instruction budget exhausted")
    if code == wasmtime.TrapCode.INTERRUPT:
        return RunResult("timeout", message="max_execution_time reached")
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return RunResult("stack_overflow", message="call stack exhausted")
    return RunResult("trap", message=message)


def _classify_instantiation(error: wasmtime.WasmtimeError) -> RunResult:
    text = str(error)
    if "memory" in text and ("limit" in text or "exceeds" in text or "minimum" in text):
        return RunResult("memory_limit", message=text.splitlines()[0])
    if "table" in text and ("limit" in text or "exceeds" in text or "minimum" in text):
        return RunResult("table_limit", message=text.splitlines()[0])
    if _DENIED in text:
        return RunResult("capability_denied", message=text.split(_DENIED, 1)[1].splitlines()[0])
    return RunResult("trap", message=text.splitlines()[0] if text else "instantiation failed")
