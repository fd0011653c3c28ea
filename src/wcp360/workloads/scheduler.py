"""The scheduler loop: claim due task occurrences and run them, exactly once across processes.

Each tick opens one transaction that selects due tasks `FOR UPDATE SKIP LOCKED` (PostgreSQL), so
two schedulers never pick the same task at once; inside it, the claimed occurrence is stored as a
`queued` run and the task's `next_run_at` moves on before the commit. A second scheduler that
reads the task after that commit sees the new `next_run_at`. The unique (task_id, scheduled_for)
on runs is the last fence: a duplicate occurrence cannot even be stored. SQLite has one writer at a
time; its write transactions begin IMMEDIATE (store/database.py), which serialises the claims.

Missed occurrences (no scheduler ran at the time): `skip` records one `skipped` run and moves on
to the next future occurrence; `run_once` runs once now and then moves on.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession

from wcp360 import metrics
from wcp360.authz import Principal
from wcp360.config.server import SchedulerConfig
from wcp360.errors import WcpError
from wcp360.keys import HostKeys
from wcp360.store.database import Database
from wcp360.store.models import Run, Task, User
from wcp360.store.scope import SYSTEM
from wcp360.store.types import utcnow
from wcp360.workloads.execution import Executor
from wcp360.workloads.runs import ACTIVE, ExecuteRequest
from wcp360.workloads.schedules import Schedule
from wcp360.workloads.tasks import SealedEnvError, open_env

_log = structlog.get_logger("wcp360.scheduler")
SWEEP_EVERY = 30.0  # seconds between looks for runs whose process died


@dataclass(frozen=True)
class Claim:
    run_id: uuid.UUID
    task_id: uuid.UUID
    user_id: uuid.UUID
    module_id: uuid.UUID
    request: ExecuteRequest
    # Why the occurrence cannot run, known at claim time (its sealed environment does not open).
    refusal: str | None = None


class Scheduler:
    def __init__(
        self, db: Database, executor: Executor, config: SchedulerConfig, keys: HostKeys, name: str | None = None
    ) -> None:
        self.db = db
        self.executor = executor
        self.config = config
        self.keys = keys
        self.name = name or f"scheduler-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.claimed = 0
        self.conflicts = 0

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="scheduler", daemon=True)
        self._thread.start()

    def run_forever(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            try:
                self.tick()
                if time.monotonic() - last_sweep > SWEEP_EVERY:
                    last_sweep = time.monotonic()
                    self.executor.runs.sweep_lost()
                    self.executor.runs.remove_expired_output()
            except Exception:  # a database outage must not end the loop; the next tick retries
                _log.exception("scheduler tick failed")
            self._stop.wait(self.config.tick.total_seconds())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    # -- one tick -------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Claim]:
        """Claim what is due now and start it; returns the claims (tests wait on their runs)."""
        now = now or utcnow()
        try:
            claims = self._claim(now)
        except IntegrityError:
            # Only reachable when two schedulers raced past the row locks (SQLite without
            # BEGIN IMMEDIATE): nothing was stored, the next tick sees the winner's commit.
            self.conflicts += 1
            metrics.SCHEDULER_CONFLICTS.inc()
            return []
        self.claimed += len(claims)
        for claim in claims:
            self._start(claim)
        return claims

    def _claim(self, now: datetime) -> list[Claim]:
        claims: list[Claim] = []
        with self.db.transaction(SYSTEM) as s:
            due = s.scalars(
                select(Task)
                .where(Task.status == "active", Task.next_run_at <= now)
                .order_by(Task.priority.desc(), Task.next_run_at)
                .limit(self.config.batch)
                .with_for_update(skip_locked=True)
            ).all()
            busy = self._active_runs(s, {task.user_id for task in due})
            for task in due:
                if busy.get(task.user_id, 0) >= self.config.max_concurrent_per_user:
                    continue  # stays due; lower-priority tasks of this user wait as well
                claim = self._claim_one(s, task, now)
                if claim is not None:
                    claims.append(claim)
                    busy[task.user_id] = busy.get(task.user_id, 0) + 1
        return claims

    def _active_runs(self, s: OrmSession, users: set[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not users:
            return {}
        # Lock the owners' rows (in id order: no deadlock between schedulers) so the count below
        # includes what another scheduler committed for them meanwhile: the per-user limit holds
        # across processes, not just within one.
        s.execute(select(User.id).where(User.id.in_(users)).order_by(User.id).with_for_update())
        rows = s.execute(
            select(Run.user_id, func.count())
            .where(Run.user_id.in_(users), Run.status.in_(ACTIVE), Run.task_id.is_not(None))
            .group_by(Run.user_id)
        ).all()
        return {user_id: count for user_id, count in rows}

    def _claim_one(self, s: OrmSession, task: Task, now: datetime) -> Claim | None:
        assert task.next_run_at is not None
        occurrence = task.next_run_at
        schedule = Schedule(task.kind, task.schedule)  # type: ignore[arg-type]
        missed = now - occurrence > self.config.missed_after
        # Merely late (a slow tick): the next occurrence follows this one, even if it is due
        # already, so none is lost. Missed: move on to the first occurrence still ahead.
        task.next_run_at = schedule.next_after_now(occurrence, now) if missed else schedule.after(occurrence)
        task.last_run_at = now
        if task.next_run_at is None:
            task.status = "finished"
        payload = task.payload
        refusal = None
        try:
            env = open_env(self.keys, task.id, payload)
        except SealedEnvError as exc:
            env, refusal = {}, str(exc)
        request = ExecuteRequest(list(payload.get("args", [])), str(payload.get("stdin", "")).encode(), env)
        run = Run(
            module_id=task.module_id,
            user_id=task.user_id,
            task_id=task.id,
            scheduled_for=occurrence,
            status="queued",
            request=request.recorded(),
            runner=self.executor.runs.runner_id,
            heartbeat_at=now,
        )
        if missed and task.missed == "skip":
            run.status, run.message, run.finished_at = "skipped", "missed: no scheduler ran at the time", now
        s.add(run)
        s.flush()
        if run.status == "skipped":
            return None
        return Claim(run.id, task.id, task.user_id, task.module_id, request, refusal)

    def _start(self, claim: Claim) -> None:
        """Run a claimed occurrence as its owner; a refusal finishes the run with the reason."""
        metrics.SCHEDULED_RUNS.inc()
        if claim.refusal is not None:
            self.executor.runs.mark(claim.run_id, "refused", claim.refusal)
            return
        try:
            owner = self._owner(claim.user_id)
            module, job = self.executor.prepare(owner, claim.module_id, claim.request)
            self.executor.start_queued(owner, module, claim.request, job, claim.run_id)
        except (WcpError, RuntimeError) as exc:
            self.executor.runs.mark(claim.run_id, "refused", exc.detail if isinstance(exc, WcpError) else str(exc))

    def _owner(self, user_id: uuid.UUID) -> Principal:
        with self.db.transaction(SYSTEM, readonly=True) as s:
            user = s.get(User, user_id)
            if user is None or user.status != "active":
                raise _OwnerGone("the task's owner is not an active account")
            return Principal(user.id, user.username, tuple(user.role_names), via="scheduler")


class _OwnerGone(WcpError):
    status = 409
    code = "owner-inactive"
    title = "Task owner inactive"
