"""A pool of worker processes that run modules apart from the API process.

A crash, hang or memory blow-up in a module can take down at most its worker: the pool answers
that run with a typed outcome, kills and replaces the worker, and keeps serving. Each worker
confines itself (no_new_privs, Landlock, seccomp) before it touches tenant code, compiles each
module once, and keeps the compiled artifact on disk tagged with an HMAC under a host secret, so
`Module.deserialize` only ever sees bytes this host produced.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import multiprocessing
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from wcp360 import metrics
from wcp360.config.sandbox import Capabilities, ModuleCapabilities, SandboxConfig
from wcp360.keys import ensure_private_dir, write_private
from wcp360.workloads.engine.confine import Confinement
from wcp360.workloads.engine.dispatch import FairQueue, NoWorkerFree
from wcp360.workloads.engine.limits import ModuleLimits
from wcp360.workloads.engine.outbound import OutboundDenied, fetch
from wcp360.workloads.engine.outcomes import RunResult
from wcp360.workloads.engine.pipe import (
    HttpAnswer,
    HttpDenied,
    HttpRequest,
    Loaded,
    Loading,
    PipeError,
    Ready,
    receive_from_worker,
    send_to_pool,
)

_log = structlog.get_logger("wcp360.workers")
# The last fence, for a module the epoch interruption cannot stop (blocked in a host call): the
# pool kills its worker RUN_GRACE seconds after max_execution_time. A worker that has to load the
# module first (compile it, or read its artifact) says so and gets `sandbox.yml max_compile_time` more, once per
# job: a worker that ran tenant code before is not trusted to ask for more than that.
RUN_GRACE = 1.0
# Compiled modules a worker keeps in memory (the least recently used dropped first).
MODULE_CACHE = 32


@dataclass
class Job:
    digest: str
    args: list[str] = field(default_factory=list)
    stdin: bytes = b""
    env: dict[str, str] = field(default_factory=dict)
    capabilities: dict[str, bool] = field(default_factory=dict)
    grants: dict[str, Any] | None = None
    entry: str = "_start"
    compile_only: bool = False
    snapshot: bool = False
    restore: bytes | None = None
    # The module_capabilities key the grants came from (for the audit event; workers ignore it).
    grant: str | None = None
    # The module's own limits (a digest-bound module_capabilities entry), or the sandbox defaults.
    limits: ModuleLimits | None = None


def artifact_tag(key: bytes, digest: str, artifact: bytes) -> str:
    return hmac.new(key, digest.encode() + b"\0" + artifact, hashlib.sha256).hexdigest()


def _worker_main(conn: Connection, sandbox_json: str, store: str, compiled: str, scratch: str, key: bytes) -> None:
    """Entry point of a worker process (spawned: it inherits nothing but these arguments)."""
    import wasmtime

    from wcp360.workloads.engine.confine import confine
    from wcp360.workloads.engine.sandbox import DENIED, EpochTicker, Templates, make_engine, run

    config = SandboxConfig.model_validate_json(sandbox_json)

    def http_get(url: str) -> tuple[int, bytes]:
        # Workers have no network: the pool in the API process checks the URL and fetches.
        send_to_pool(conn, HttpRequest(url))
        answer: HttpAnswer | HttpDenied = conn.recv()  # from the trusted pool
        if isinstance(answer, HttpDenied):
            raise wasmtime.Trap(f"{DENIED}{answer.reason}")
        return answer.status, answer.body

    read_only = [Path(p) for p in sys.path if p] + [
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(store),
        Path("/usr"),
        Path("/lib"),
        Path("/lib64"),
        Path("/dev/urandom"),
    ]
    # Directories granted in sandbox.yml: Landlock is the backstop for the whole worker, so it lets
    # the worker reach the union of them; which run sees which is decided per run by its WASI
    # preopens (only the grant that applies to the module is preopened).
    granted = [grant for grant in config.module_capabilities.values() if grant.file_access]
    writable_grants = [Path(p) for grant in granted for p in grant.writable_paths if Path(p).is_dir()]
    read_only += [Path(p) for grant in granted for p in grant.allowed_paths if Path(p).is_dir()]
    confinement = confine(read_only, [Path(compiled), Path(scratch), *writable_grants])
    engine = make_engine(config)
    EpochTicker(engine)
    templates = Templates(engine)  # each module linked once per capability set, not per run
    cache: OrderedDict[str, wasmtime.Module] = OrderedDict()
    send_to_pool(conn, Ready(confinement))

    def load(digest: str) -> wasmtime.Module:
        if digest in cache:
            cache.move_to_end(digest)
            return cache[digest]
        # Reading an artifact (0.7 s for 69 MB) or compiling (most of a minute) is not the run's
        # time: the pool allows for it (max_compile_time) until told it is over.
        send_to_pool(conn, Loading())
        try:
            module = load_from_disk(digest)
        finally:
            send_to_pool(conn, Loaded())
        cache[digest] = module
        if len(cache) > MODULE_CACHE:
            templates.forget(cache.popitem(last=False)[1])  # its links would keep it in memory
        return module

    def load_from_disk(digest: str) -> wasmtime.Module:
        artifact, tag = Path(compiled) / f"{digest}.cwasm", Path(compiled) / f"{digest}.tag"
        if artifact.exists() and tag.exists():
            data = artifact.read_bytes()
            if hmac.compare_digest(tag.read_text().strip(), artifact_tag(key, digest, data)):
                try:
                    return wasmtime.Module.deserialize(engine, data)
                except wasmtime.WasmtimeError:
                    pass  # made by another engine version: compile again
        module = wasmtime.Module(engine, (Path(store) / digest[:2] / digest).read_bytes())
        data = bytes(module.serialize())
        write_private(artifact, data)
        write_private(tag, artifact_tag(key, digest, data).encode())
        return module

    while True:
        try:
            job: Job = conn.recv()
        except EOFError:
            return
        try:
            module = load(job.digest)
        except (wasmtime.WasmtimeError, OSError) as exc:
            # An unreadable module is this run's failure, not the worker's: it stays up.
            send_to_pool(conn, RunResult("trap", message=f"module not loadable: {str(exc).splitlines()[0]}"))
            continue
        if job.compile_only:
            send_to_pool(conn, RunResult("ok", message="compiled"))
            continue
        with _tempfile_in(scratch):
            grants = ModuleCapabilities(**job.grants) if job.grants else None
            result = run(
                engine,
                module,
                config,
                Capabilities(**job.capabilities),
                grants,
                job.args,
                job.stdin,
                job.env,
                job.entry,
                job.snapshot,
                job.restore,
                http_get,
                job.limits,
                templates,
            )
        send_to_pool(conn, result)


def _within(result: RunResult, allowed: float, key: str) -> RunResult:
    """A run that finished past max_execution_time (blocked in a host call, where epochs do not
    reach, but back before the fence) broke its limit all the same: it is a timeout, not `ok`."""
    if result.outcome in ("ok", "exit") and result.duration_ms > allowed * 1000:
        return replace(
            result,
            outcome="timeout",
            state=None,
            message=f"ran {result.duration_ms / 1000:.2f} s in a host call, past {allowed:g} s ({key})",
        )
    return result


class _tempfile_in:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __enter__(self) -> None:
        import tempfile

        self.previous = tempfile.tempdir
        tempfile.tempdir = self.directory

    def __exit__(self, *_: object) -> None:
        import tempfile

        tempfile.tempdir = self.previous


class Worker:
    def __init__(self, pool: WorkerPool) -> None:
        parent, child = multiprocessing.get_context("spawn").Pipe()
        self.conn = parent
        self.process = multiprocessing.get_context("spawn").Process(
            target=_worker_main,
            args=(
                child,
                pool.sandbox.model_dump_json(),
                str(pool.store),
                str(pool.compiled),
                str(pool.scratch),
                pool.key,
            ),
            daemon=True,
        )
        self.process.start()
        child.close()
        try:
            if not parent.poll(120):
                raise EOFError
            ready = receive_from_worker(parent, 0)
            if not isinstance(ready, Ready):
                raise PipeError(f"expected Ready, got {type(ready).__name__}")
            self.confinement: Confinement = ready.confinement
        except (EOFError, OSError, PipeError):
            self.kill()
            raise RuntimeError("a sandbox worker did not start") from None
        # The modules it holds, as the pool believes: every job loads its module, and the worker
        # keeps the last MODULE_CACHE. A hint for choosing a worker, never trusted for anything else.
        self.holds: OrderedDict[str, None] = OrderedDict()

    def loaded(self, digest: str) -> None:
        self.holds[digest] = None
        self.holds.move_to_end(digest)
        if len(self.holds) > MODULE_CACHE:
            self.holds.popitem(last=False)

    def kill(self) -> None:
        self.process.kill()
        self.process.join(10)
        with contextlib.suppress(OSError):  # a run's thread may be closing it at the same moment
            self.conn.close()


class WorkerPool:
    def __init__(
        self,
        sandbox: SandboxConfig,
        store: Path,
        work_dir: Path,
        key: bytes,
        grace: float = RUN_GRACE,
        compile_grace: float | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.store = store
        self.compiled = work_dir / "compiled"
        self.scratch = work_dir / "scratch"
        # All three must exist before a worker starts: Landlock rules name existing directories
        # only, and a store created after the workers would stay unreadable to them.
        for directory in (store, self.compiled, self.scratch):
            ensure_private_dir(directory)
        self.key = key
        self.grace = grace
        self.compile_grace = sandbox.max_compile_time.total_seconds() if compile_grace is None else compile_grace
        self._queue: FairQueue[Worker] = FairQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.workers: list[Worker] = []
        for _ in range(sandbox.workers):
            self._add()

    def _add(self) -> Worker:
        worker = Worker(self)
        with self._lock:
            self.workers.append(worker)
        self._queue.put(worker)
        return worker

    def request(self, user: str, digest: str | None = None) -> Future[Worker]:
        """A worker held for `user` once one is free (fairly between users: dispatch.FairQueue);
        of the idle ones, one that holds module `digest` already."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        return self._queue.request(user, (lambda worker: digest in worker.holds) if digest else None)

    def withdraw(self, pending: Future[Worker]) -> bool:
        """Stop waiting for a worker; False when one was handed over meanwhile (give it back)."""
        return self._queue.withdraw(pending)

    @property
    def waiting(self) -> int:
        """Runs waiting for a worker now."""
        return self._queue.waiting

    def acquire(self, user: str, timeout: float | None = None, digest: str | None = None) -> Worker:
        """Wait (blocking this thread) for a worker; NoWorkerFree after `timeout` seconds."""
        pending = self.request(user, digest)
        try:
            return pending.result(timeout)
        except TimeoutError:
            if self.withdraw(pending):
                raise NoWorkerFree(timeout or 0.0) from None
            return pending.result()  # handed over just as the wait ended

    def give_back(self, worker: Worker, user: str) -> None:
        """A worker acquired but not used (the request went away meanwhile)."""
        self._queue.put(worker, user)

    def execute(self, job: Job, user: str = "system") -> RunResult:
        return self.run_on(self.acquire(user, digest=job.digest), job, user)

    def run_on(self, worker: Worker, job: Job, user: str) -> RunResult:
        """Run `job` on `worker` (held for `user`); the worker goes back to the queue, or is replaced."""
        while not worker.process.is_alive():
            # Died while idle (killed from outside, out of memory): nobody's run is lost.
            self._queue.drop(user)
            self._replace(worker, "died idle")
            worker = self.acquire(user)
        limits = job.limits or ModuleLimits(self.sandbox.resource_limits)
        allowed, time_key = limits.values.max_execution_time.total_seconds(), limits.key("max_execution_time")
        # Output, and a snapshot's memory and globals: nothing a worker sends may be larger.
        blob_limit = max(limits.values.max_memory, limits.values.max_output) + 1024 * 1024
        started = time.perf_counter()
        try:
            worker.conn.send(job)
            deadline = time.monotonic() + allowed + self.grace
            may_compile, loading = True, False
            while worker.conn.poll(max(0.0, deadline - time.monotonic())):
                message = receive_from_worker(worker.conn, blob_limit)
                if isinstance(message, HttpRequest):  # check, fetch, answer
                    # Wall-clock time in a host call is the run's time: the fetch gets what is left.
                    left = deadline - self.grace - time.monotonic()
                    worker.conn.send(self._outbound(job, message.url, left))
                    continue
                if isinstance(message, Loading):
                    if may_compile:
                        may_compile, loading = False, True
                        deadline = time.monotonic() + self.compile_grace + allowed + self.grace
                    continue
                if isinstance(message, Loaded):
                    loading = False
                    deadline = min(deadline, time.monotonic() + allowed + self.grace)
                    continue
                if not isinstance(message, RunResult):
                    raise PipeError(f"unexpected {type(message).__name__} during a run")
                worker.loaded(job.digest)
                self._queue.put(worker, user)
                return _within(message, allowed, time_key)
            self._queue.drop(user)
            self._replace(worker, "compile too long" if loading else "hung")
            why = (
                f"compiling the module took longer than {self.compile_grace:g} s (sandbox.yml max_compile_time); "
                "its worker was killed: raise the key for modules this large"
                if loading
                else f"the run passed {allowed:g} s ({time_key}) in a host call; its worker was killed"
            )
            return RunResult("timeout", message=why, duration_ms=round((time.perf_counter() - started) * 1000, 3))
        except PipeError as exc:
            # Not one of its messages: the worker is not trusted to go on (tenant code ran in it).
            _log.warning("worker sent a malformed message", error=str(exc)[:200])
            self._queue.drop(user)
            self._replace(worker, "malformed message")
            return RunResult(
                "trap",
                message="the worker running this module sent a malformed message; it was replaced",
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        except (EOFError, OSError, BrokenPipeError):
            self._queue.drop(user)
            self._replace(worker, "crashed")
            return RunResult(
                "trap",
                message="the worker running this module died; it was replaced",
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    def _outbound(self, job: Job, url: str, left: float) -> HttpAnswer | HttpDenied:
        # The job was built by this process from the configuration: its grants are trustworthy,
        # whatever the worker (running tenant code) sends.
        granted = job.capabilities.get("network_access", False)
        allowed = list((job.grants or {}).get("allowed_hosts", [])) if granted else []
        limits = (job.limits or ModuleLimits(self.sandbox.resource_limits)).values
        try:
            status, body = fetch(url, allowed, timeout=max(0.05, min(10.0, left)), limit=limits.max_output)
        except OutboundDenied as exc:
            metrics.OUTBOUND_REQUESTS.labels(result="denied").inc()
            return HttpDenied(str(exc))
        except (OSError, http.client.HTTPException) as exc:
            metrics.OUTBOUND_REQUESTS.labels(result="failed").inc()
            _log.info("outbound request failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return HttpAnswer(-1)
        metrics.OUTBOUND_REQUESTS.labels(result="ok").inc()
        return HttpAnswer(status, body)

    def _replace(self, worker: Worker, reason: str) -> None:
        with self._lock:
            if self._closed:  # close() kills it; nothing to replace
                return
            self.workers.remove(worker)
        worker.kill()
        metrics.WORKER_RESTARTS.labels(reason=reason).inc()
        _log.warning("replacing worker", reason=reason, pid=worker.process.pid)
        self._add()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self.workers)
            self.workers.clear()
        self._queue.close(RuntimeError("the worker pool is closed"))
        for worker in workers:
            worker.kill()
