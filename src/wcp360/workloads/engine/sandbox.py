"""Running one module in the wasmtime sandbox with the limits of `sandbox.yml`, and naming the outcome.

Limits: memory and table sizes (StoreLimits), an instruction budget (fuel), wall-clock time (epoch
interruption, ticked by a timer thread), stack size (max_wasm_stack), capped stdout/stderr.
Capabilities are all off unless granted; a WASI function that needs one the module lacks refuses
the way WASI refuses (linking.py). A run is `capability_denied` when the program could not go on
after a refusal (it exited non-zero or trapped); every refusal is named in the run, audited and
counted.

This is the in-process core; the worker processes (workers.py) isolate it from the API.
"""

from __future__ import annotations

import contextlib
import errno
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import wasmtime

from wcp360.config.sandbox import Capabilities, ModuleCapabilities, SandboxConfig
from wcp360.workloads.engine.instance_state import GLOBAL_TYPES, InstanceState, StateError
from wcp360.workloads.engine.limits import PAGE, ModuleLimits
from wcp360.workloads.engine.linking import DENIED, EMPTY_ANSWERS, HttpGet, Templates
from wcp360.workloads.engine.outcomes import VIOLATIONS, Outcome, RunResult

__all__ = ["DENIED", "VIOLATIONS", "Outcome", "RunResult", "Templates", "run"]

EPOCH_TICK = 0.01  # seconds per epoch
# Roughly ten instructions per loop iteration of the seed's `no_infinite_loops.max_iterations`.
FUEL_PER_ITERATION = 10


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
    settings.cranelift_opt_level = config.cranelift_opt_level
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


def fuel_budget(config: SandboxConfig, limits: ModuleLimits) -> tuple[int, str]:
    """The instruction budget of a run, and the sandbox.yml key that set it (named in errors)."""
    if limits.values.max_fuel is not None:
        return limits.values.max_fuel, limits.key("max_fuel")
    for policy in config.policies:
        if policy.name == "no_infinite_loops" and policy.enabled and policy.max_iterations:
            return (
                policy.max_iterations * FUEL_PER_ITERATION,
                "sandbox.yml policies[no_infinite_loops].max_iterations (x 10)",
            )
    return 10**12, "no budget set"  # effectively unlimited; the time limit still applies


# The limit behind each limit outcome: every limit error names the key that set it.
LIMIT_OF = {
    "timeout": "max_execution_time",
    "stack_overflow": "max_stack_depth",
    "memory_limit": "max_memory",
    "table_limit": "max_table_size",
    "output_limit": "max_output",
}


def _name_the_limit(result: RunResult, fuel: int, fuel_key: str, limits: ModuleLimits) -> None:
    if result.outcome == "out_of_fuel":
        result.message = f"instruction budget of {fuel} fuel units exhausted ({fuel_key})"
    elif result.outcome in LIMIT_OF and "sandbox.yml" not in (result.message or ""):
        result.message = f"{result.message or result.outcome} ({limits.key(LIMIT_OF[result.outcome])})"


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
    snapshot: bool = False,
    restore: bytes | None = None,
    http_get: HttpGet | None = None,
    module_limits: ModuleLimits | None = None,
    templates: Templates | None = None,
) -> RunResult:
    """Run `entry`; with `restore`, start from that instance state; with `snapshot`, capture the
    state after a run that finished (`ok` or `exit`). `module_limits`: the module's own limits,
    where its grant sets them (else `config.resource_limits`). `templates`: the caller's
    pre-linked instances (a worker's), else the module is linked for this run alone."""
    module_limits = module_limits or ModuleLimits(config.resource_limits)
    limits = module_limits.values
    store = wasmtime.Store(engine)
    store.set_limits(
        memory_size=limits.max_memory, table_elements=limits.max_table_size, instances=4, tables=4, memories=1
    )
    fuel, fuel_key = fuel_budget(config, module_limits)
    store.set_fuel(fuel)
    store.set_epoch_deadline(max(1, math.ceil(limits.max_execution_time.total_seconds() / EPOCH_TICK)))
    stdout, stderr = _Capped(limits.max_output), _Capped(limits.max_output)
    # wasmtime-py takes stdin only as a file; without input, WASI's default empty stdin saves
    # creating and removing one per run.
    with tempfile.NamedTemporaryFile() if stdin else contextlib.nullcontext() as stdin_file:
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["module", *(args or [])]
        wasi.env = list((env or {}).items()) if capabilities.environment_access else []
        if stdin_file is not None:
            stdin_file.write(stdin)
            stdin_file.flush()
            wasi.stdin_file = stdin_file.name
        wasi.stdout_custom = stdout.write
        wasi.stderr_custom = stderr.write
        if capabilities.file_access and grants is not None:
            writable = {str(p) for p in grants.writable_paths}
            for path in grants.allowed_paths:
                wasi.preopen_dir(str(path), str(path), str(path) in writable)
        store.set_wasi(wasi)
        templates = templates or Templates(engine, size=1)
        denied: list[str] = []
        templates.hooks.denied, templates.hooks.http_get = denied, http_get
        templates.hooks.output_limit = limits.max_output

        def instantiate() -> wasmtime.Instance:
            return templates.instance_pre(module, capabilities, http_get is not None).instantiate(store)

        started = time.perf_counter()
        result = _execute(instantiate, store, entry, limits.max_memory, snapshot, restore)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    result.fuel_used = fuel - store.get_fuel()
    if denied:
        result.denied = sorted(set(denied))
        refused = [name for name in result.denied if name.rsplit(".", 1)[-1] not in EMPTY_ANSWERS]
        stopped = result.outcome == "trap" or (result.outcome == "exit" and result.exit_code != 0)
        if refused and stopped:
            # The program could not go on after a refusal (its own judgement: it gave up).
            how = f"exit status {result.exit_code}" if result.outcome == "exit" else (result.message or "a trap")
            result.outcome = "capability_denied"
            result.message = f"not granted: {', '.join(refused)}; the program stopped after the refusal ({how})"
        elif result.outcome in ("ok", "exit") and not result.message:
            empty = [name for name in result.denied if name not in refused]
            answers = [f"answered as empty: {', '.join(empty)}"] if empty else []
            answers += [f"refused with an errno: {', '.join(refused)}"] if refused else []
            result.message = f"not granted, {'; '.join(answers)}"
    result.stdout, result.stderr = bytes(stdout.data), bytes(stderr.data)
    if result.outcome in ("ok", "exit") and (stdout.overflowed or stderr.overflowed):
        result.outcome = "output_limit"
        result.message = f"output passed {limits.max_output} bytes"
    _name_the_limit(result, fuel, fuel_key, module_limits)
    return result


def _execute(
    instantiate: Callable[[], wasmtime.Instance],
    store: wasmtime.Store,
    entry: str,
    memory_limit: int,
    snapshot: bool = False,
    restore: bytes | None = None,
) -> RunResult:
    memory_peak = 0
    instance = exports = None
    try:
        instance = instantiate()
        # Listed once: wasmtime-py wraps every export each time it is asked (8% of a trivial run).
        exports = instance.exports(store)
        if restore is not None:
            try:
                problem = _restore(store, instance, InstanceState.decode(restore), memory_limit)
            except StateError as exc:
                problem = RunResult("trap", message=f"snapshot state unreadable: {exc}")
            if problem is not None:
                return problem
        function = exports.get(entry)
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
    if exports is not None:
        memory = exports.get("memory")
        if isinstance(memory, wasmtime.Memory):
            memory_peak = memory.data_len(store)
    outcome.memory_peak_bytes = memory_peak
    if snapshot and instance is not None and outcome.outcome in ("ok", "exit"):
        outcome.state = capture(store, instance).encode()
    # A module that dies after memory.grow was refused at the limit ran out of memory, whatever
    # trap it then chose (unreachable, a failed allocation's abort, a bad access).
    if outcome.outcome in ("trap", "out_of_fuel") and memory_limit - memory_peak < PAGE and memory_peak:
        outcome.outcome, outcome.message = "memory_limit", f"memory reached max_memory ({memory_limit} bytes)"
    return outcome


def capture(store: wasmtime.Store, instance: wasmtime.Instance) -> InstanceState:
    """Exported memories and exported mutable globals of number types (references cannot be kept)."""
    state = InstanceState()
    for name, item in instance.exports(store).items():
        if isinstance(item, wasmtime.Memory):
            state.memories[name] = bytes(item.read(store, 0, item.data_len(store)))
        elif isinstance(item, wasmtime.Global):
            kind = str(item.type(store).content)
            if item.type(store).mutable and kind in GLOBAL_TYPES:
                state.globals[name] = (kind, item.value(store))
    return state


def _restore(
    store: wasmtime.Store, instance: wasmtime.Instance, state: InstanceState, memory_limit: int
) -> RunResult | None:
    """Put a captured state into a fresh instance; a state that does not fit it is refused."""
    exports = instance.exports(store)
    for name, data in state.memories.items():
        memory = exports.get(name)
        if not isinstance(memory, wasmtime.Memory):
            return RunResult("trap", message=f"snapshot does not match the module: no memory {name!r}")
        current = memory.data_len(store)
        if len(data) < current or len(data) % PAGE:
            return RunResult("trap", message=f"snapshot does not match the module: memory {name!r} size")
        if len(data) > memory_limit:
            return RunResult("memory_limit", message=f"snapshot memory exceeds max_memory ({memory_limit} bytes)")
        if len(data) > current:
            memory.grow(store, (len(data) - current) // PAGE)
        memory.write(store, data, 0)
    for name, (kind, value) in state.globals.items():
        item = exports.get(name)
        if (
            not isinstance(item, wasmtime.Global)
            or not item.type(store).mutable
            or str(item.type(store).content) != kind
        ):
            return RunResult("trap", message=f"snapshot does not match the module: global {name!r}")
        item.set_value(store, _val(kind, value))
    return None


def _val(kind: str, value: int | float) -> wasmtime.Val:
    if kind == "i32":
        return wasmtime.Val.i32(int(value))
    if kind == "i64":
        return wasmtime.Val.i64(int(value))
    return wasmtime.Val.f32(float(value)) if kind == "f32" else wasmtime.Val.f64(float(value))


def _classify_trap(trap: wasmtime.Trap) -> RunResult:
    message = str(trap).splitlines()[0] if str(trap) else "trap"
    code = trap.trap_code
    if DENIED in str(trap):
        return RunResult("capability_denied", message=str(trap).split(DENIED, 1)[1].splitlines()[0])
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
    if DENIED in text:
        return RunResult("capability_denied", message=text.split(DENIED, 1)[1].splitlines()[0])
    return RunResult("trap", message=text.splitlines()[0] if text else "instantiation failed")
