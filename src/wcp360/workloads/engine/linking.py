"""How a module's imports are linked: WASI, refusals for capabilities it lacks, WCP360's host
functions; and the pre-linked templates a worker keeps so a run does not link again.

A WASI function that needs a capability the module lacks is replaced at link time by a stub that
refuses the way WASI refuses (an errno: EACCES for files, ENOTCAPABLE otherwise; an empty
environment), so real programs handle the refusal themselves; every refusal is recorded in the run.

Linking depends only on the module and on which capabilities are granted, never on the run: the
WASI functions reach the run's own context through its store, and the stubs reach the run in
progress through `RunHooks`. So a worker links each (module, capability set) once and keeps
wasmtime's `InstancePre` (imports resolved, type-checked). Per run that saves a Linker,
`define_wasi`, one `define_func` per refused import and the linker's teardown: 0.1 ms of a
0.35 ms trivial run, measured in process (benchmarks/README.md, issue 18).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import wasmtime

from wcp360.config.sandbox import Capabilities
from wcp360.workloads.engine.analysis import NEEDS_CAPABILITY, WASI

DENIED = "capability denied: "
# Host functions WCP360 itself offers to modules (beside WASI).
HOST_MODULE = "wcp360"
# url -> (HTTP status or -1, body); raises for a URL the module may not reach.
HttpGet = Callable[[str], tuple[int, bytes]]
# Denied calls answered as empty: without environment_access a program sees an empty environment
# (every wasi-libc/libc++ program reads it at start-up; a trap there ended real programs before main).
EMPTY_ANSWERS = frozenset({"environ_sizes_get", "environ_get"})
# WASI errnos (wasi_snapshot_preview1): the answer to every other denied call that returns one.
EACCES, ENOTCAPABLE = 2, 76


@dataclass
class RunHooks:
    """What the linked host functions reach for the run in progress. A template's functions are
    shared by every run of it, so a run sets these before it starts (one run at a time per
    `Templates`: a worker runs one job at a time)."""

    denied: list[str] = field(default_factory=list)
    http_get: HttpGet | None = None
    output_limit: int = 0


class Templates:
    """Pre-linked instances, at most `size`, the least recently used dropped first."""

    def __init__(self, engine: wasmtime.Engine, size: int = 64) -> None:
        self.engine = engine
        self.size = size
        self.hooks = RunHooks()
        # Keyed by the module object's id; the value keeps the module alive, so the id stays its own.
        self._cache: OrderedDict[tuple[int, tuple[bool, ...]], tuple[wasmtime.Module, wasmtime.InstancePre]]
        self._cache = OrderedDict()

    def instance_pre(self, module: wasmtime.Module, capabilities: Capabilities, http: bool) -> wasmtime.InstancePre:
        """The module linked for these capabilities (`http`: the run can reach the pool's fetcher).
        Raises WasmtimeError for an import nothing provides (the run's instantiation failure)."""
        # Every capability a stub or host function depends on (network_access is among them).
        key = (id(module), (*(getattr(capabilities, name) for name in NEEDS_CAPABILITY), http))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached[1]
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        _deny_missing_capabilities(linker, module, capabilities, self.hooks)
        _define_host_functions(linker, module, capabilities, http, self.hooks)
        pre = linker.instantiate_pre(module)
        self._cache[key] = (module, pre)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return pre

    def forget(self, module: wasmtime.Module) -> None:
        """Drop the module's links (the worker dropped the module: they must not keep it alive)."""
        for key in [key for key, (held, _) in self._cache.items() if held is module]:
            del self._cache[key]


def _deny_missing_capabilities(
    linker: wasmtime.Linker, module: wasmtime.Module, capabilities: Capabilities, hooks: RunHooks
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
        if name in EMPTY_ANSWERS and _is_i32_pair_to_i32(item.type):

            def empty(caller: wasmtime.Caller, first: int, second: int, _name: str = qualified) -> int:
                hooks.denied.append(_name)
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
                hooks.denied.append(_name)
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
    linker: wasmtime.Linker, module: wasmtime.Module, capabilities: Capabilities, http: bool, hooks: RunHooks
) -> None:
    """`wcp360.http_get(url_ptr, url_len, buf_ptr, buf_cap) -> i32`: the body's length written to
    the buffer for a 2xx answer, -status for any other, -1 when the request failed. A URL outside
    `allowed_hosts` ends the run as `capability_denied`."""
    wanted = {(item.module, item.name) for item in module.imports}
    if (HOST_MODULE, "http_get") not in wanted:
        return
    i32 = wasmtime.ValType.i32()
    signature = wasmtime.FuncType([i32, i32, i32, i32], [i32])
    if not capabilities.network_access or not http:

        def denied(*_: object) -> int:
            raise wasmtime.Trap(f"{DENIED}{HOST_MODULE}.http_get needs network_access")

        linker.define_func(HOST_MODULE, "http_get", signature, denied)
        return

    def host_http_get(caller: wasmtime.Caller, url_ptr: int, url_len: int, buf_ptr: int, buf_cap: int) -> int:
        if hooks.http_get is None:  # not reachable: a template with `http` is only used by runs that have it
            raise wasmtime.Trap(f"{DENIED}{HOST_MODULE}.http_get needs network_access")
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory) or url_len > 8192:
            raise wasmtime.Trap("http_get needs an exported memory and a URL under 8 KiB")
        url = bytes(memory.read(caller, url_ptr, url_ptr + url_len)).decode("utf-8", "replace")
        status, body = hooks.http_get(url)  # raises Trap for a denied URL (workers.py)
        if status < 0:
            return -1
        if not 200 <= status < 300:
            return -status
        body = body[: min(buf_cap, hooks.output_limit)]
        memory.write(caller, body, buf_ptr)
        return len(body)

    linker.define_func(HOST_MODULE, "http_get", signature, host_http_get, access_caller=True)
