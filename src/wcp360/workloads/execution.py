"""Executing a module for a user: policy, quarantine, the worker pool, the run record, the audit
event (`module_execute` with its outcome) and the metrics."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import structlog

from wcp360 import audit, metrics
from wcp360.authz import Principal, Resource
from wcp360.config.sandbox import SandboxConfig
from wcp360.errors import Conflict, InvalidInput, NotFound
from wcp360.store.database import Database
from wcp360.store.models import Run
from wcp360.workloads.modules import ModuleService, effective_capabilities
from wcp360.workloads.sandbox import VIOLATIONS, RunResult
from wcp360.workloads.workers import Job, WorkerPool

_log = structlog.get_logger("wcp360.execution")


def run_view(run: Run) -> dict[str, Any]:
    return {
        "run_id": str(run.id),
        "module_id": str(run.module_id),
        "outcome": run.outcome,
        "exit_code": run.exit_code,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "message": run.message,
        "duration_ms": run.duration_ms,
        "fuel_used": run.fuel_used,
        "memory_peak_bytes": run.memory_peak_bytes,
        "user_id": str(run.user_id),
    }


class Executor:
    def __init__(
        self, db: Database, modules: ModuleService, sandbox: SandboxConfig, work_dir: Path, artifact_key: bytes
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

    @property
    def pool(self) -> WorkerPool:
        # Workers start on first use (an upload to compile, or a run): the CLI pays nothing.
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is closed")
            if self._pool is None:
                self._pool = WorkerPool(self.sandbox, self.modules.store, self.work_dir, self.artifact_key)
            return self._pool

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
        self, actor: Principal, module_id: uuid.UUID, args: list[str], stdin: bytes, env: dict[str, str]
    ) -> dict[str, Any]:
        module = self.modules.authorised(actor, module_id, "modules:execute")
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
            args,
            stdin,
            env,
            capabilities.model_dump(),
            grants.model_dump(mode="json") if grants else None,
        )
        result = self.pool.execute(job)
        metrics.EXECUTIONS.labels(outcome=result.outcome).inc()
        metrics.EXECUTION_SECONDS.observe(result.duration_ms / 1000)
        if result.outcome in VIOLATIONS:
            metrics.SANDBOX_VIOLATIONS.inc()
        view = self._record(actor, module.id, result)
        audit.record(
            "module_execute",
            actor=actor,
            resource_type="module",
            resource_id=str(module.id),
            outcome="success" if result.outcome in ("ok", "exit") else result.outcome,
            details={
                "run_id": view["run_id"],
                "result": result.outcome,
                "exit_code": result.exit_code,
                "duration_ms": view["duration_ms"],
                "fuel_used": result.fuel_used,
            },
        )
        return view

    def _record(self, actor: Principal, module_id: uuid.UUID, result: RunResult) -> dict[str, Any]:
        cap = self.sandbox.resource_limits.max_output
        with self.db.transaction(actor.user_id) as s:
            run = Run(
                module_id=module_id,
                user_id=actor.user_id,
                outcome=result.outcome,
                exit_code=result.exit_code,
                stdout=result.stdout[:cap].decode("utf-8", "replace"),
                stderr=result.stderr[:cap].decode("utf-8", "replace"),
                message=(result.message or "")[:512] or None,
                duration_ms=round(result.duration_ms),
                fuel_used=result.fuel_used,
                memory_peak_bytes=result.memory_peak_bytes,
            )
            s.add(run)
            s.flush()
            return run_view(run)

    def get_run(self, actor: Principal, run_id: uuid.UUID) -> dict[str, Any]:
        with self.db.transaction(actor.user_id, all_owners=True) as s:
            run = s.get(Run, run_id)
            view = run_view(run) if run is not None else None
        if view is None:
            raise NotFound("no such run")
        # Runs are owned and never shared: the policy function decides (and audits a denial).
        self.modules.policy.require(
            actor, "modules:read", Resource("runs", id=view["run_id"], owner_id=uuid.UUID(view["user_id"]))
        )
        return view

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
