"""Running one module in the wasmtime sandbox with the limits of `sandbox.yml`, and naming the outcome.

Limits: memory and table sizes (StoreLimits), an instruction budget (fuel), wall-clock time (epoch
interruption, ticked by a timer thread), stack size (max_wasm_stack), capped stdout/stderr.
Capabilities are all off unless granted; a WASI function that needs one the module lacks is
replaced at link time by a stub that refuses the way WASI refuses (an errno: EACCES for files,
ENOTCAPABLE otherwise; an empty environment), so real programs handle the refusal themselves. A
run is `capability_denied` when the program could not go on after a refusal (it exited non-zero
or trapped); every refusal is named in the run, audited and counted.

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
from wcp360.workloads.engine.analysis import NEEDS_CAPABILITY, WASI
from wcp360.workloads.engine.instance_state import GLOBAL_TYPES, InstanceState, StateError
from wcp360.workloads.engine.limits import PAGE, ModuleLimits
from wcp360.workloads.engine.outcomes import VIOLATIONS, Outcome, RunResult

__all__ = ["VIOLATIONS", "Outcome", "RunResult", "run"]

EPOCH_TICK = 0.01  # seconds per epoch
# Roughly ten instructions per loop iteration of the seed's `no_infinite_loops.max_iterations`.
FUEL_PER_ITERATION = 10
DENIED = "capability denied: "
# Host functions WCP360 itself offers to modules (beside WASI).
HOST_MODULE = "wcp360"
# url -> (HTTP status or -1, body); raises for a URL the module may not reach.
HttpGet = Callable[[str], tuple[int, bytes]]


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
) -> RunResult:
    """Run `entry`; with `restore`, start from that instance state; with `snapshot`, capture the
    state after a run that finished (`ok` or `exit`). `module_limits`: the module's own limits,
    where its grant sets them (else `config.resource_limits`)."""
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
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        denied: list[str] = []
        _deny_missing_capabilities(linker, store, module, capabilities, denied)
        _define_host_functions(linker, module, capabilities, http_get, limits.max_output)
        started = time.perf_counter()
        result = _execute(linker, store, module, entry, limits.max_memory, snapshot, restore)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
    result.fuel_used = fuel - store.get_fuel()
    if denied:
        result.denied = sorted(set(denied))
        refused = [name for name in result.denied if name.rsplit(".", 1)[-1] not in _EMPTY_ANSWERS]
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


# Denied calls answered as empty: without environment_access a program sees an empty environment
# (every wasi-libc/libc++ program reads it at start-up; a trap there ended real programs before main).
_EMPTY_ANSWERS = frozenset({"environ_sizes_get", "environ_get"})
# WASI errnos (wasi_snapshot_preview1): the answer to every other denied call that returns one.
EACCES, ENOTCAPABLE = 2, 76


def _deny_missing_capabilities(
    linker: wasmtime.Linker,
    store: wasmtime.Store,
    module: wasmtime.Module,
    capabilities: Capabilities,
    denied: list[str],
) -> None:
    linker.allow_shadowing = True
    i32 = str(wasmtime.ValType.i32())
    for item in module.imports:
        name = item.name or ""
        if item.module not in WASI or not isinstance(item.type, wasmtime.FuncType):
            continue
        needed = next((cap for cap, prefixes in NEEDS_CAPABILITY.items() if name.startswith(prefixes)), None)
        if needed is None or getattr(capabilities, needed):
            continue
        qualified = f"{item.module}.{name}"
        if name in _EMPTY_ANSWERS and _is_i32_pair_to_i32(item.type):

            def empty(caller: wasmtime.Caller, first: int, second: int, _name: str = qualified) -> int:
                denied.append(_name)
                if _name.endswith("environ_sizes_get"):  # (count_ptr, size_ptr): both zero
                    memory = caller.get("memory")
                    if not isinstance(memory, wasmtime.Memory):
                        raise wasmtime.Trap(f"{DENIED}{_name} needs an exported memory")
                    memory.write(caller, b"\0\0\0\0", first)
                    memory.write(caller, b"\0\0\0\0", second)
                return 0  # WASI errno: success

            linker.define_func(item.module, name, item.type, empty, access_caller=True)
            continue
        if [str(r) for r in item.type.results] == [i32]:  # every WASI call that can fail says so
            answer = EACCES if needed == "file_access" else ENOTCAPABLE

            def refuse(*_: object, _name: str = qualified, _answer: int = answer) -> int:
                denied.append(_name)
                return _answer

            linker.define_func(item.module, name, item.type, refuse)
            continue
        message = f"{DENIED}{qualified} needs {needed}"

        def deny(*_: object, _message: str = message) -> None:
            raise wasmtime.Trap(_message)

        linker.define_func(item.module, name, item.type, deny)


def _is_i32_pair_to_i32(kind: wasmtime.FuncType) -> bool:
    i32 = str(wasmtime.ValType.i32())
    return [str(p) for p in kind.params] == [i32, i32] and [str(r) for r in kind.results] == [i32]


def _define_host_functions(
    linker: wasmtime.Linker,
    module: wasmtime.Module,
    capabilities: Capabilities,
    http_get: HttpGet | None,
    limit: int,
) -> None:
    """`wcp360.http_get(url_ptr, url_len, buf_ptr, buf_cap) -> i32`: the body's length written to
    the buffer for a 2xx answer, -status for any other, -1 when the request failed. A URL outside
    `allowed_hosts` ends the run as `capability_denied`."""
    wanted = {(item.module, item.name) for item in module.imports}
    if (HOST_MODULE, "http_get") not in wanted:
        return
    i32 = wasmtime.ValType.i32()
    signature = wasmtime.FuncType([i32, i32, i32, i32], [i32])
    if not capabilities.network_access or http_get is None:

        def denied(*_: object) -> int:
            raise wasmtime.Trap(f"{DENIED}{HOST_MODULE}.http_get needs network_access")

        linker.define_func(HOST_MODULE, "http_get", signature, denied)
        return

    def host_http_get(caller: wasmtime.Caller, url_ptr: int, url_len: int, buf_ptr: int, buf_cap: int) -> int:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory) or url_len > 8192:
            raise wasmtime.Trap("http_get needs an exported memory and a URL under 8 KiB")
        url = bytes(memory.read(caller, url_ptr, url_ptr + url_len)).decode("utf-8", "replace")
        status, body = http_get(url)  # raises Trap for a denied URL (workers.py)
        if status < 0:
            return -1
        if not 200 <= status < 300:
            return -status
        body = body[: min(buf_cap, limit)]
        memory.write(caller, body, buf_ptr)
        return len(body)

    linker.define_func(HOST_MODULE, "http_get", signature, host_http_get, access_caller=True)


def _execute(
    linker: wasmtime.Linker,
    store: wasmtime.Store,
    module: wasmtime.Module,
    entry: str,
    memory_limit: int,
    snapshot: bool = False,
    restore: bytes | None = None,
    http_get: HttpGet | None = None,
) -> RunResult:
    memory_peak = 0
    instance = None
    try:
        instance = linker.instantiate(store, module)
        if restore is not None:
            try:
                problem = _restore(store, instance, InstanceState.decode(restore), memory_limit)
            except StateError as exc:
                problem = RunResult("trap", message=f"snapshot state unreadable: {exc}")
            if problem is not None:
                return problem
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
