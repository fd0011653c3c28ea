"""Executing a module for a user: policy, quarantine, snapshots, the worker pool (synchronously or
on background threads), the audit event (`module_execute` with its outcome) and the metrics. The
run records themselves are runs.py."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import structlog
from anyio.to_thread import run_sync

from wcp360 import audit, metrics
from wcp360.authz import Principal
from wcp360.config.sandbox import SandboxConfig
from wcp360.errors import Conflict, InvalidInput
from wcp360.store.database import Database
from wcp360.store.models import Module
from wcp360.store.types import utcnow
from wcp360.workloads.engine.dispatch import Admission, NoWorkerFree
from wcp360.workloads.engine.grants import capabilities_with
from wcp360.workloads.engine.limits import limits_for
from wcp360.workloads.engine.outcomes import VIOLATIONS, RunResult
from wcp360.workloads.engine.workers import Job, Worker, WorkerPool
from wcp360.workloads.modules import ModuleService, NotReady
from wcp360.workloads.runs import HEARTBEAT, ExecuteRequest, RunStore
from wcp360.workloads.snapshots import SnapshotService
from wcp360.workloads.views import RunView

_log = structlog.get_logger("wcp360.execution")
# How long a synchronous run waits for its module's compile unless asked to wait for all of it:
# a small module compiles in milliseconds (a hello world uploaded and run at once just runs),
# a 69 MB program takes most of a minute and gets a 409 with Retry-After instead.
COMPILE_PATIENCE = 2.0


class Executor:
    def __init__(
        self,
        db: Database,
        modules: ModuleService,
        snapshots: SnapshotService,
        sandbox: SandboxConfig,
        work_dir: Path,
        artifact_key: bytes,
    ) -> None:
        self.db = db
        self.modules = modules
        self.sandbox = sandbox
        self.work_dir = work_dir
        self.artifact_key = artifact_key
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Compiles in progress in this process: the future's result is the error, None when it compiled.
        self._compiling: dict[str, Future[str | None]] = {}
        # How the latest compiles of this process ended (error or None, seconds), by digest: an
        # upload starts its compile before its row exists, and the row is marked from here.
        self._compiled: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        # Bytes per second of the last real compile on this machine: how long the next should take.
        self._compile_rate: float | None = None
        self._closed = False
        self._accepting = True  # new background runs; _closed: the worker pool itself
        self._stopped = threading.Event()
        self.runs = RunStore(db, modules.policy, sandbox.resource_limits.max_output, sandbox.quotas)
        self.admission = Admission(sandbox.runs_per_user)
        # Threads that talk to a worker during a run: a run gets one only once it holds a worker,
        # so there are never more busy than workers (waiting holds no thread at all).
        self._talkers: ThreadPoolExecutor | None = None
        self._heartbeat: threading.Thread | None = None
        # Background runs of this process not finished yet: "waiting" (for a slot or a worker) or "running".
        self._background: dict[uuid.UUID, str] = {}
        self.snapshots = snapshots

    @property
    def pool(self) -> WorkerPool:
        # Workers start on first use (an upload to compile, or a run): the CLI pays nothing.
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is closed")
            if self._pool is None:
                self._pool = WorkerPool(self.sandbox, self.modules.store, self.work_dir, self.artifact_key)
            return self._pool

    def warm(self) -> None:
        """Start the worker pool now, in the background (servers: the first run need not wait)."""

        def start() -> None:
            try:
                self.pool  # noqa: B018 (the property starts the pool)
            except Exception as exc:  # closed meanwhile, or workers could not start: the first run retries
                _log.warning("worker pool not started ahead of time", error=str(exc)[:200])

        threading.Thread(target=start, name="pool-warmup", daemon=True).start()

    def precompile(self, digest: str) -> Future[str | None] | None:
        """Compile a stored module in a worker now, in the background (uploads do not wait), and
        record its compile state: ready, or failed with the reason. Compiling has its own budget
        (sandbox.yml max_compile_time) and never counts against a run's max_execution_time."""
        if not self.sandbox.precompile:
            return None
        done: Future[str | None] = Future()
        with self._lock:
            if digest in self._compiling:
                return self._compiling[digest]
            finished = self._compiled.get(digest)
            if finished is None:
                self._compiling[digest] = done
        if finished is not None:  # compiled moments ago, before the upload's row existed
            self.modules.compile_finished(digest, *finished)
            done.set_result(finished[0])
            return done

        def compile_in_worker() -> None:
            started = time.perf_counter()
            error: str | None = None
            try:
                result = self.pool.execute(Job(digest, compile_only=True), user="compile")
                seconds = time.perf_counter() - started
                with self._lock:
                    stopping = not self._accepting
                if result.outcome != "ok" and stopping:
                    # Its worker was stopped with the server: not the module's failure.
                    raise RuntimeError("the server is stopping")
                if result.outcome != "ok":
                    error = result.message or result.outcome
                    _log.warning("ahead-of-time compile failed", digest=digest, message=error)
                elif seconds > 1.0:  # a real compile, not an artifact read: the machine's pace
                    self._compile_rate = self._size_of(digest) / seconds
                # Known here before the rows are marked: an upload whose row appears meanwhile
                # finds either the compile still in progress (marked by the update below) or
                # this outcome (and marks its row itself).
                with self._lock:
                    self._compiled[digest] = (error, round(seconds, 3))
                    while len(self._compiled) > 256:
                        self._compiled.popitem(last=False)
                    self._compiling.pop(digest, None)
                self.modules.compile_finished(digest, error, round(seconds, 3))
            except Exception as exc:  # shutting down: the state stays compiling, resumed at the next start
                _log.warning("ahead-of-time compile not finished", digest=digest, error=str(exc)[:200])
                error = f"the compile was interrupted ({str(exc)[:200]}); it resumes when the server starts again"
            finally:
                with self._lock:
                    self._compiling.pop(digest, None)
                done.set_result(error)

        threading.Thread(target=compile_in_worker, name="precompile", daemon=True).start()
        return done

    def resume_compiles(self) -> None:
        """Compiles a stopped server left unfinished start again (server start)."""
        for digest in self.modules.still_compiling():
            self.precompile(digest)

    def _size_of(self, digest: str) -> int:
        try:
            return (self.modules.store / digest[:2] / digest).stat().st_size
        except OSError:
            return 0

    def _compile_to_wait_for(self, module: Module) -> Future[str | None] | None:
        """The compile a synchronous run waits for before it asks for a worker, if any."""
        if module.compile_state == "ready":
            return self._compile_of(module.digest)  # the same bytes uploaded again, compiling now
        return self._compile_of(module.digest) or self.precompile(module.digest)

    def _not_ready(self, module: Module) -> NotReady:
        """Still compiling after COMPILE_PATIENCE: a 409 now, with Retry-After (never a run that
        times out because its module was compiling)."""
        elapsed = 0.0
        if module.compile_started_at is not None:
            elapsed = (utcnow() - module.compile_started_at).total_seconds()
        expected = module.size / self._compile_rate if self._compile_rate else None
        left = max(1.0, expected - elapsed) if expected is not None else 5.0
        estimate = f", about {expected:.0f} s in all on this machine" if expected is not None else ""
        return NotReady(
            f"module is compiling ({elapsed:.0f} s so far{estimate}); retry later, or send "
            '"wait_for_compile": true to wait for it',
            headers={"Retry-After": str(math.ceil(min(left, 60.0)))},
        )

    @staticmethod
    def _compiled_or_refused(error: str | None) -> None:
        if error is not None:
            raise NotReady(f"module failed to compile: {error}")

    def forget(self, digest: str) -> None:
        """The module's bytes are gone from the store: its compiled artifact goes too."""
        with self._lock:
            self._compiled.pop(digest, None)
        for suffix in (".cwasm", ".tag"):
            (self.work_dir / "compiled" / f"{digest}{suffix}").unlink(missing_ok=True)

    def _compile_of(self, digest: str) -> Future[str | None] | None:
        """The ahead-of-time compile of this module in progress, if any: a run waits for its
        artifact rather than compiling the same bytes a second time on the same cores."""
        with self._lock:
            return self._compiling.get(digest)

    # -- synchronous runs ---------------------------------------------------------------------

    def execute(
        self, actor: Principal, module_id: uuid.UUID | None, request: ExecuteRequest, background: bool = False
    ) -> RunView:
        """Run a module now, blocking this thread (the finished run), or queue it (the queued run,
        to poll). The API awaits `execute_async` instead, which holds no thread while it waits.

        With `request.restore_from` the module may be left out: the snapshot names it."""
        module, job = self.prepare(actor, module_id, request)
        if background:
            return self.queue(actor, module, request, job)
        user = _account(actor)
        compiling = self._compile_to_wait_for(module)
        if compiling is not None:
            try:
                error = compiling.result(timeout=None if request.wait_for_compile else COMPILE_PATIENCE)
            except TimeoutError:
                raise self._not_ready(module) from None
            self._compiled_or_refused(error)
        self.admission.enter(user)
        try:
            pool = self.pool
            result = pool.run_on(pool.acquire(user, self._wait_seconds, job.digest), job, user)
        finally:
            self.admission.leave(user)
        return self._complete(actor, module, request, result, None, job)

    async def execute_async(self, actor: Principal, module_id: uuid.UUID | None, request: ExecuteRequest) -> RunView:
        """A synchronous run for the API: every wait (for a slot, a compile, a worker) happens on
        the event loop; a thread is taken only for database work and while a worker runs the job."""
        user = _account(actor)
        self.admission.enter(user)  # first: a flood over its limit is refused before any database work
        try:
            if self._prepares_inline(request):
                module, job = self.prepare(actor, module_id, request)
            else:
                module, job = await run_sync(self.prepare, actor, module_id, request)
            compiling = self._compile_to_wait_for(module)
            if compiling is not None:
                # shield: a caller giving up must not cancel the compile, which others may await.
                waiting = asyncio.shield(asyncio.wrap_future(compiling))
                try:
                    error = await asyncio.wait_for(waiting, None if request.wait_for_compile else COMPILE_PATIENCE)
                except TimeoutError:
                    raise self._not_ready(module) from None
                self._compiled_or_refused(error)
            pool = self._pool if self._pool is not None else await run_sync(lambda: self.pool)
            worker = await self._worker_for(pool, user, job.digest)

            def run_and_store() -> RunView:
                # One thread for both: the worker goes back to the queue as soon as the run is
                # over, and storing the run and its event needs no second hop.
                result = pool.run_on(worker, job, user)
                return self._complete(actor, module, request, result, None, job)

            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._talker_threads(), contextvars.copy_context().run, run_and_store)
        finally:
            self.admission.leave(user)

    def _prepares_inline(self, request: ExecuteRequest) -> bool:
        """Whether authorising the run is cheap enough for the event loop: on SQLite the module
        lookup is one local read (~0.3 ms, authentication makes the same call); PostgreSQL, snapshot
        quotas and restores (file reads) take a thread."""
        return not self.db.is_postgres and not request.snapshot and request.restore_from is None

    async def _worker_for(self, pool: WorkerPool, user: str, digest: str) -> Worker:
        pending = pool.request(user, digest)
        try:
            # shield: a timeout or a client going away must not cancel the request under the lock
            # of the queue; it is withdrawn below instead.
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending)), self._wait_seconds)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if not pool.withdraw(pending):
                # Handed over just now: give it back (once the hand-over has completed).

                def give_back(handed: Future[Worker]) -> None:
                    if handed.exception() is None:
                        pool.give_back(handed.result(), user)

                pending.add_done_callback(give_back)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            if isinstance(exc, TimeoutError):
                raise NoWorkerFree(self._wait_seconds) from None
            raise

    @property
    def _wait_seconds(self) -> float:
        return self.sandbox.max_worker_wait.total_seconds()

    def _talker_threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._talkers is None:
                self._talkers = ThreadPoolExecutor(self.sandbox.workers * 2 + 2, thread_name_prefix="wasm-run")
            return self._talkers

    # -- queued runs ----------------------------------------------------------------------------

    def queue(self, actor: Principal, module: Module, request: ExecuteRequest, job: Job) -> RunView:
        view = self.runs.queue(actor, module.id, request, self.sandbox.max_queued_runs_per_user)
        self.start_queued(actor, module, request, job, uuid.UUID(view.run_id))
        return view

    def start_queued(
        self, actor: Principal, module: Module, request: ExecuteRequest, job: Job, run_id: uuid.UUID
    ) -> None:
        """Run a stored `queued` run in the background: when its account has a slot
        (`max_concurrent_runs_per_user`), once its module is compiled, on the next fair worker."""
        user = _account(actor)
        with self._lock:
            if not self._accepting:
                raise RuntimeError("the executor is closed")
            self._background[run_id] = "waiting"
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
                self._heartbeat.start()

        def on_worker(pending: Future[Worker]) -> None:
            error = pending.exception()
            with self._lock:
                wanted = self._background.get(run_id) == "waiting"
                if wanted and error is None:
                    self._background[run_id] = "running"
            if not wanted:  # cancelled by close() meanwhile
                if error is None:
                    self.pool.give_back(pending.result(), user)
                self.admission.leave(user)
                return
            if error is not None:
                self._end(run_id, user, f"not run: {str(error)[:200]}")
                return
            self._talker_threads().submit(run, pending.result())

        def run(worker: Worker) -> None:
            try:
                self.runs.start(actor, run_id)
                result = self.pool.run_on(worker, job, user)
                self._complete(actor, module, request, result, run_id, job)
            except Exception as exc:
                _log.exception("background run failed", run_id=str(run_id))
                self.runs.mark(run_id, "finished", f"failed: {type(exc).__name__}")
            finally:
                self.admission.leave(user)
                self._forget(run_id)

        def request_worker() -> None:
            try:
                self.pool.request(user, job.digest).add_done_callback(on_worker)
            except RuntimeError as exc:
                self._end(run_id, user, f"not run: {exc}")

        def after_compile(compiled: Future[str | None]) -> None:
            error = compiled.result()
            if error is not None:
                self._end(run_id, user, f"not run: module failed to compile: {error[:200]}")
            else:
                request_worker()

        def when_admitted() -> None:
            # A queued run waits for its module's compile (it was asked to wait: it is queued).
            compiling = self._compile_of(module.digest)
            if compiling is None and module.compile_state == "compiling":
                compiling = self.precompile(module.digest)
            if compiling is not None:
                compiling.add_done_callback(after_compile)
            else:
                request_worker()

        self.admission.enter_or_wait(user, when_admitted)

    def _end(self, run_id: uuid.UUID, user: str, message: str) -> None:
        self.admission.leave(user)
        self.runs.mark(run_id, "refused", message)
        self._forget(run_id)

    def _beat(self) -> None:
        # Woken by close(): a closed executor must not beat against a database that is gone.
        while not self._stopped.wait(HEARTBEAT.total_seconds()):
            try:
                self.runs.heartbeat()
            except Exception as exc:  # the database is away: the next beat tries again
                _log.warning("run heartbeat failed", error=str(exc)[:200])

    def _forget(self, run_id: uuid.UUID) -> None:
        with self._changed:
            self._background.pop(run_id, None)
            self._changed.notify_all()

    def prepare(self, actor: Principal, module_id: uuid.UUID | None, request: ExecuteRequest) -> tuple[Module, Job]:
        """Authorise the run and build its job (the scheduler stores its run before starting it)."""
        restore: bytes | None = None
        if request.restore_from is not None:
            module, restore = self.snapshots.state_for_restore(actor, request.restore_from, module_id)
        elif module_id is not None:
            module = self.modules.authorised(actor, module_id, "modules:execute")
        else:
            raise InvalidInput("name the module to run")
        if request.snapshot:
            self.modules.policy.require(actor, "snapshots:create")
            self.snapshots.check_quota(
                actor, self.sandbox.max_snapshots_per_user, self.sandbox.quotas.max_snapshot_bytes_per_user
            )
        if module.status != "active":
            raise Conflict(f"module is {module.status}; it cannot run until an administrator releases it")
        if module.compile_state == "failed":
            raise NotReady(f"module failed to compile: {module.compile_error}")
        if actor.user_id is None:
            raise InvalidInput("runs belong to user accounts")
        grant = self.modules.grant(module)
        capabilities = capabilities_with(self.sandbox, grant)
        job = Job(
            module.digest,
            request.args,
            request.stdin,
            request.env,
            capabilities.model_dump(),
            grant.capabilities.model_dump(mode="json", exclude={"digest", "resource_limits"}) if grant else None,
            snapshot=request.snapshot,
            restore=restore,
            grant=grant.key if grant else None,
            limits=limits_for(self.sandbox, grant) if grant and grant.capabilities.resource_limits else None,
        )
        return module, job

    def _complete(
        self,
        actor: Principal,
        module: Module,
        request: ExecuteRequest,
        result: RunResult,
        run_id: uuid.UUID | None,
        job: Job,
    ) -> RunView:
        metrics.EXECUTIONS.labels(outcome=result.outcome).inc()
        metrics.EXECUTION_SECONDS.observe(result.duration_ms / 1000)
        if result.outcome in VIOLATIONS or result.denied:
            metrics.SANDBOX_VIOLATIONS.inc()
        queued = run_id is not None
        run_id = run_id or uuid.uuid4()
        snapshot_id = None
        if result.state is not None:
            snapshot_id = uuid.UUID(self.snapshots.create(actor, module, run_id, result.state).id)
        if queued:
            view = self.runs.finish(actor, module.id, request, result, run_id, snapshot_id, queued)
            self._audit(actor, module, request, result, run_id, snapshot_id, view.task_id, job).wait()
            return view
        # A synchronous run's event is complete before its row is stored: the row is written while
        # the trail's fsync runs, and the answer waits for both (benchmarks/README.md).
        pending = self._audit(actor, module, request, result, run_id, snapshot_id, None, job)
        view = self.runs.finish(actor, module.id, request, result, run_id, snapshot_id, queued)
        pending.wait()
        return view

    @staticmethod
    def _audit(
        actor: Principal,
        module: Module,
        request: ExecuteRequest,
        result: RunResult,
        run_id: uuid.UUID,
        snapshot_id: uuid.UUID | None,
        task_id: str | None,
        job: Job,
    ) -> audit.PendingEvent:
        return audit.submit(
            "module_execute",
            actor=actor,
            resource_type="module",
            resource_id=str(module.id),
            outcome="success" if result.outcome in ("ok", "exit") else result.outcome,
            details={
                "run_id": str(run_id),
                "result": result.outcome,
                # Not "exit_code": details keys containing "code" are redacted (TOTP codes).
                "exit_status": result.exit_code,
                "duration_ms": round(result.duration_ms),
                "fuel_used": result.fuel_used,
                "task_id": task_id,
                "snapshot_id": str(snapshot_id) if snapshot_id else None,
                "restored_from": str(request.restore_from) if request.restore_from else None,
                # The sandbox.yml module_capabilities entry whose grants the run had, if any.
                "grant": job.grant,
                # Calls refused with an answer the module could handle (an empty environment).
                "denied_calls": result.denied or None,
                # Limits the module's own grant set (above or below the defaults), if any.
                "own_limits": sorted(job.limits.keys) if job.limits else None,
            },
        )

    def close(self, drain: bool = False) -> None:
        """Stop. Runs already on a worker finish; background runs still waiting finish as well with
        `drain`, else they are recorded as cancelled. Then the workers stop."""
        with self._changed:
            self._accepting = False
            if drain:
                self._changed.wait_for(lambda: not self._background)
            cancelled = [run_id for run_id, state in self._background.items() if state == "waiting"]
            for run_id in cancelled:
                del self._background[run_id]
        for run_id in cancelled:
            self.runs.mark(run_id, "refused", "cancelled: the server stopped before the run started")
        with self._changed:
            self._changed.wait_for(lambda: not self._background)
            talkers, self._talkers = self._talkers, None
        if talkers is not None:
            talkers.shutdown(wait=True)
        self._stopped.set()  # after the drain: runs still finishing kept beating
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _account(actor: Principal) -> str:
    """The key runs are counted and queued under: the account, whatever credential it used."""
    return str(actor.user_id) if actor.user_id is not None else f"host:{actor.username}"
