"""Executing a module for a user: policy, quarantine, snapshots, the worker pool (synchronously or
on background threads), the audit event (`module_execute` with its outcome) and the metrics. The
run records themselves are runs.py."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from wcp360 import audit, metrics
from wcp360.authz import Principal
from wcp360.config.sandbox import SandboxConfig
from wcp360.errors import Conflict, InvalidInput
from wcp360.store.database import Database
from wcp360.store.models import Module
from wcp360.workloads.modules import ModuleService, effective_capabilities
from wcp360.workloads.runs import HEARTBEAT, ExecuteRequest, RunStore
from wcp360.workloads.sandbox import VIOLATIONS, RunResult
from wcp360.workloads.snapshots import SnapshotService
from wcp360.workloads.workers import Job, WorkerPool

_log = structlog.get_logger("wcp360.execution")


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
        self._compiling: dict[str, threading.Event] = {}
        self._closed = False
        self._background: ThreadPoolExecutor | None = None
        self._accepting = True  # new background runs; _closed: the worker pool itself
        self._stopped = threading.Event()
        self.runs = RunStore(db, modules.policy, sandbox.resource_limits.max_output)
        self._heartbeat: threading.Thread | None = None
        self._queued: dict[Future[dict[str, Any]], uuid.UUID] = {}
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

    def precompile(self, digest: str) -> None:
        """Compile a stored module in a worker now, in the background (uploads do not wait)."""
        if not self.sandbox.precompile:
            return

        done = threading.Event()
        with self._lock:
            if digest in self._compiling:
                return
            self._compiling[digest] = done

        def compile_in_worker() -> None:
            try:
                result = self.pool.execute(Job(digest, compile_only=True))
                if result.outcome != "ok":
                    _log.warning("ahead-of-time compile failed", digest=digest, message=result.message)
            except Exception as exc:  # shutting down, or no worker could start: the first run compiles
                _log.warning("ahead-of-time compile skipped", digest=digest, error=str(exc)[:200])
            finally:
                with self._lock:
                    self._compiling.pop(digest, None)
                done.set()

        threading.Thread(target=compile_in_worker, name="precompile", daemon=True).start()

    def execute(
        self, actor: Principal, module_id: uuid.UUID | None, request: ExecuteRequest, background: bool = False
    ) -> dict[str, Any]:
        """Run a module now (the finished run) or in the background (the queued run, to poll).

        With `request.restore_from` the module may be left out: the snapshot names it."""
        module, job = self.prepare(actor, module_id, request)
        if not background:
            result = self.pool.execute(job)
            return self._complete(actor, module, request, result, None)
        view = self.runs.queue(actor, module.id, request, self.sandbox.max_queued_runs_per_user)
        self.start_queued(actor, module, request, job, uuid.UUID(view["run_id"]))
        return view

    def start_queued(
        self, actor: Principal, module: Module, request: ExecuteRequest, job: Job, run_id: uuid.UUID
    ) -> Future[dict[str, Any]]:
        """Run a stored `queued` run on the background threads (which wait on the worker pool)."""

        def in_background() -> dict[str, Any]:
            self.runs.start(actor, run_id)
            try:
                result = self.pool.execute(job)
            except Exception as exc:  # the pool is closing: the run ends, visibly, instead of hanging queued
                result = RunResult("trap", message=f"not run: {str(exc)[:200]}")
            return self._complete(actor, module, request, result, run_id)

        with self._lock:
            if not self._accepting:
                raise RuntimeError("the executor is closed")
            if self._background is None:
                self._background = ThreadPoolExecutor(self.sandbox.workers * 2, thread_name_prefix="wasm-run")
                self._heartbeat = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
                self._heartbeat.start()
            future = self._background.submit(in_background)
            self._queued[future] = run_id
        future.add_done_callback(self._forget)
        return future

    def _beat(self) -> None:
        # Woken by close(): a closed executor must not beat against a database that is gone.
        while not self._stopped.wait(HEARTBEAT.total_seconds()):
            try:
                self.runs.heartbeat()
            except Exception as exc:  # the database is away: the next beat tries again
                _log.warning("run heartbeat failed", error=str(exc)[:200])

    def _forget(self, future: Future[dict[str, Any]]) -> None:
        with self._lock:
            self._queued.pop(future, None)

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
            self.snapshots.check_quota(actor, self.sandbox.max_snapshots_per_user)
        if module.status != "active":
            raise Conflict(f"module is {module.status}; it cannot run until an administrator releases it")
        if actor.user_id is None:
            raise InvalidInput("runs belong to user accounts")
        capabilities = effective_capabilities(self.sandbox, module.name)
        grants = self.sandbox.module_capabilities.get(module.name)
        with self._lock:
            compiling = self._compiling.get(module.digest)
        if compiling is not None:
            # A worker is compiling this module ahead of time right now: wait for its artifact
            # rather than compiling the same bytes a second time on the same cores.
            compiling.wait(self.sandbox.resource_limits.max_execution_time.total_seconds() + 600)
        job = Job(
            module.digest,
            request.args,
            request.stdin,
            request.env,
            capabilities.model_dump(),
            grants.model_dump(mode="json") if grants else None,
            snapshot=request.snapshot,
            restore=restore,
        )
        return module, job

    def _complete(
        self,
        actor: Principal,
        module: Module,
        request: ExecuteRequest,
        result: RunResult,
        run_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        metrics.EXECUTIONS.labels(outcome=result.outcome).inc()
        metrics.EXECUTION_SECONDS.observe(result.duration_ms / 1000)
        if result.outcome in VIOLATIONS:
            metrics.SANDBOX_VIOLATIONS.inc()
        queued = run_id is not None
        run_id = run_id or uuid.uuid4()
        snapshot_id = None
        if result.state is not None:
            snapshot_id = uuid.UUID(self.snapshots.create(actor, module, run_id, result.state)["id"])
        if queued:
            view = self.runs.finish(actor, module.id, request, result, run_id, snapshot_id, queued)
            self._audit(actor, module, request, result, run_id, snapshot_id, view["task_id"]).wait()
            return view
        # A synchronous run's event is complete before its row is stored: the row is written while
        # the trail's fsync runs, and the answer waits for both (benchmarks/README.md).
        pending = self._audit(actor, module, request, result, run_id, snapshot_id, None)
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
            },
        )

    def close(self, drain: bool = False) -> None:
        """Stop. Runs already on a worker finish; queued background runs finish as well with
        `drain`, else they are cancelled and recorded as such. Then the workers stop."""
        with self._lock:
            self._accepting = False
            background, self._background = self._background, None
            queued = dict(self._queued)
        if background is not None:
            background.shutdown(wait=True, cancel_futures=not drain)
            for future, run_id in queued.items():
                if future.cancelled():
                    self.runs.mark(run_id, "refused", "cancelled: the server stopped before the run started")
        self._stopped.set()  # after the drain: runs still finishing kept beating
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
