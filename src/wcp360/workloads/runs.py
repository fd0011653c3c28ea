"""Run records: what was asked, what happened, who may read it, and whether the process that
will run a queued run is still alive.

Every queued run names its process (`runner`); that process refreshes `heartbeat_at` while it has
work, and any scheduler marks runs without a heartbeat for three beats `lost`. Runs are owned and
never shared (RLS on PostgreSQL; the policy function decides reads).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, insert, select, update

from wcp360 import audit, metrics
from wcp360.authz import Policy, Principal
from wcp360.authz.owned import Owned
from wcp360.authz.resources import RUNS
from wcp360.config.sandbox import Quotas
from wcp360.errors import TooManyRequests
from wcp360.store.database import Database
from wcp360.store.models import Run, User
from wcp360.store.scope import SYSTEM, RowScope
from wcp360.store.types import utcnow
from wcp360.workloads.engine.outcomes import RunResult
from wcp360.workloads.views import RunView

_log = structlog.get_logger("wcp360.runs")
_CLEARED = {"stdout": "", "stderr": "", "output_bytes": 0}
_QUOTA_NOTE = "output removed: the account passed sandbox.yml quotas.max_run_output_bytes_per_user"
HEARTBEAT = timedelta(seconds=10)
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class ExecuteRequest:
    args: list[str] = field(default_factory=list)
    stdin: bytes = b""
    env: dict[str, str] = field(default_factory=dict)
    snapshot: bool = False
    restore_from: uuid.UUID | None = None
    # A synchronous run of a module still compiling waits for it instead of a 409 at once.
    wait_for_compile: bool = False

    def recorded(self) -> dict[str, Any]:
        """What the run row keeps of the request: env values may be secrets, only names are kept."""
        return {
            "args": self.args,
            "stdin_bytes": len(self.stdin),
            "env": sorted(self.env),
            "snapshot": self.snapshot,
        }


def _text(output: bytes, cap: int) -> str:
    """A module's output as storable text: invalid UTF-8 and NUL bytes (which PostgreSQL's text
    type refuses) become U+FFFD, alike on every backend and in the answer. Capped after that
    conversion, in UTF-8 bytes: each invalid byte grows to three (1 MiB of 0xFF was stored as 3 MiB)."""
    text = output[:cap].decode("utf-8", "replace").replace("\x00", "\ufffd")
    encoded = text.encode()
    return text if len(encoded) <= cap else encoded[:cap].decode("utf-8", "ignore")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_view(run: Run) -> RunView:
    return RunView(
        run_id=str(run.id),
        module_id=str(run.module_id),
        status=run.status,  # a column of those values
        outcome=run.outcome,
        exit_code=run.exit_code,
        stdout=run.stdout,
        stderr=run.stderr,
        message=run.message,
        duration_ms=run.duration_ms,
        fuel_used=run.fuel_used,
        memory_peak_bytes=run.memory_peak_bytes,
        user_id=str(run.user_id),
        task_id=str(run.task_id) if run.task_id else None,
        scheduled_for=_iso(run.scheduled_for),
        snapshot_id=str(run.snapshot_id) if run.snapshot_id else None,
        restored_from=str(run.restored_from) if run.restored_from else None,
        created_at=_iso(run.created_at),
        finished_at=_iso(run.finished_at),
    )


class RunStore:
    def __init__(self, db: Database, policy: Policy, max_output: int, quotas: Quotas) -> None:
        self.db = db
        self.policy = policy
        self.max_output = max_output
        self.quotas = quotas
        self.owned = Owned(db, policy, RUNS)
        # Output stored per account since its quota was last summed: the sum reads all its runs, so
        # it is taken once a tenth of the quota (at most 1 MiB) has been written, not on every run.
        self._unsummed: dict[uuid.UUID | None, int] = {}
        self._unsummed_lock = threading.Lock()
        # Names this process on the queued runs it will run.
        self.runner_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def queue(self, actor: Principal, module_id: uuid.UUID, request: ExecuteRequest, limit: int) -> RunView:
        """Store a queued run for this process to run, unless the user has `limit` queued already."""
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            # The user's row lock (PostgreSQL; SQLite's write transactions are serial anyway) makes
            # count-then-insert atomic: two requests cannot both take the last place.
            s.execute(select(User.id).where(User.id == actor.user_id).with_for_update())
            pending = s.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.user_id == actor.user_id, Run.status.in_(ACTIVE), Run.task_id.is_(None))
            )
            if (pending or 0) >= limit:
                raise TooManyRequests(
                    f"{pending} asynchronous runs are already queued or running; the limit is {limit}",
                    headers={"Retry-After": "1"},
                )
            run = Run(
                module_id=module_id,
                user_id=actor.user_id,
                status="queued",
                restored_from=request.restore_from,
                request=request.recorded(),
                runner=self.runner_id,
                heartbeat_at=utcnow(),
            )
            s.add(run)
            s.flush()
            view = run_view(run)
        return view

    def start(self, actor: Principal, run_id: uuid.UUID) -> None:
        with self.db.transaction(RowScope.of(actor.user_id)) as s:
            s.execute(update(Run).where(Run.id == run_id).values(status="running"))

    def finish(
        self,
        actor: Principal,
        module_id: uuid.UUID,
        request: ExecuteRequest,
        result: RunResult,
        run_id: uuid.UUID,
        snapshot_id: uuid.UUID | None,
        queued: bool,
    ) -> RunView:
        """Store the outcome: update the queued run, or store a synchronous run once, finished."""
        cap = self.max_output
        stdout, stderr = _text(result.stdout, cap), _text(result.stderr, cap)
        stored = len(stdout.encode()) + len(stderr.encode())
        outputs = {
            "status": "finished",
            "outcome": result.outcome,
            "exit_code": result.exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "output_bytes": stored,
            "message": (result.message or "")[:512] or None,
            "duration_ms": round(result.duration_ms),
            "fuel_used": result.fuel_used,
            "memory_peak_bytes": result.memory_peak_bytes,
            "snapshot_id": snapshot_id,
            "finished_at": utcnow(),
        }
        if queued:
            with self.db.transaction(RowScope.of(actor.user_id)) as s:
                run = s.get(Run, run_id)
                assert run is not None
                for key, value in outputs.items():
                    setattr(run, key, value)
                s.flush()
                view = run_view(run)
            self._note_output(actor.user_id, stored)
            return view
        # A synchronous run is stored once, finished, with one Core INSERT (the ORM's unit of work
        # cost twice the statement on this path).
        values = {
            "id": run_id,
            "module_id": module_id,
            "user_id": actor.user_id,
            "restored_from": request.restore_from,
            "request": request.recorded(),
            "created_at": outputs["finished_at"],
            **outputs,
        }
        with self.db.connection(RowScope.of(actor.user_id)) as connection:
            connection.execute(insert(Run), values)
        self._note_output(actor.user_id, stored)
        return run_view(Run(**values))

    def _note_output(self, user_id: uuid.UUID | None, size: int) -> None:
        if not size:
            return
        step = max(1, min(self.quotas.max_run_output_bytes_per_user // 10, 1024 * 1024))
        with self._unsummed_lock:
            pending = self._unsummed.get(user_id, 0) + size
            due = pending >= step
            self._unsummed[user_id] = 0 if due else pending
        if due:
            self.keep_within_quota(user_id)

    # -- what is kept ---------------------------------------------------------------------

    def keep_within_quota(self, user_id: uuid.UUID | None) -> int:
        """Remove the oldest runs' output until the account is within
        `quotas.max_run_output_bytes_per_user` (the runs' records stay). Returns runs cleared."""
        limit = self.quotas.max_run_output_bytes_per_user
        with self.db.transaction(RowScope.decided(user_id)) as s:
            kept = s.scalar(select(func.coalesce(func.sum(Run.output_bytes), 0)).where(Run.user_id == user_id)) or 0
            if kept <= limit:
                return 0
            excess, cleared = kept - limit, []
            oldest = s.execute(
                select(Run.id, Run.output_bytes)
                .where(Run.user_id == user_id, Run.output_bytes > 0)
                .order_by(Run.finished_at, Run.id)
            )
            for run_id, size in oldest:
                cleared.append(run_id)
                excess -= size
                if excess <= 0:
                    break
            s.execute(update(Run).where(Run.id.in_(cleared)).values(**_CLEARED, message=_QUOTA_NOTE))
        return len(cleared)

    def remove_expired_output(self, now: datetime | None = None) -> int:
        """`quotas.run_output_retention`: clear the output of runs finished longer ago than that."""
        retention = self.quotas.run_output_retention
        if not retention:
            return 0
        cutoff = (now or utcnow()) - retention
        with self.db.transaction(SYSTEM) as s:
            result = s.execute(
                update(Run)
                .where(Run.finished_at < cutoff, Run.output_bytes > 0)
                .values(**_CLEARED, message="output removed: older than sandbox.yml quotas.run_output_retention")
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def get(self, actor: Principal, run_id: uuid.UUID) -> RunView:
        # Runs are owned and never shared: the policy function decides (and audits a denial).
        return run_view(self.owned.authorised(actor, run_id, "modules:read"))

    def list(
        self,
        actor: Principal,
        limit: int = 50,
        offset: int = 0,
        module_id: uuid.UUID | None = None,
        task_id: uuid.UUID | None = None,
        status: str | None = None,
    ) -> tuple[list[RunView], int]:
        """The actor's runs, newest first (every user's for administrators)."""
        wanted = ((Run.module_id, module_id), (Run.task_id, task_id), (Run.status, status))
        filters = [column == value for column, value in wanted if value is not None]
        return self.owned.page(actor, run_view, *filters, order_by=Run.created_at.desc(), limit=limit, offset=offset)

    def mark(self, run_id: uuid.UUID, status: str, message: str) -> None:
        """End a run that will not run (cancelled at shutdown, refused at start); audited."""
        with self.db.transaction(SYSTEM) as s:
            row = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.in_(ACTIVE))
                .values(status=status, message=message[:512], finished_at=utcnow())
                .returning(Run.user_id, Run.task_id, Run.runner)
            ).first()
        if row is not None:
            self._ended_without_running(status, run_id, row.user_id, row.task_id, row.runner, message)

    def heartbeat(self) -> int:
        """Tell the database this process still owns its queued and running runs."""
        with self.db.transaction(SYSTEM) as s:
            result = s.execute(
                update(Run).where(Run.runner == self.runner_id, Run.status.in_(ACTIVE)).values(heartbeat_at=utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def sweep_lost(self, now: datetime | None = None) -> int:
        """Mark as `lost` the runs whose process stopped beating (crashed, killed, host gone).

        Any process may sweep: a live runner beats every HEARTBEAT, so three missed beats mean
        nobody will finish the run. A lost scheduled occurrence is not run again (at most once)."""
        cutoff = (now or utcnow()) - 3 * HEARTBEAT
        with self.db.transaction(SYSTEM) as s:
            lost = s.execute(
                update(Run)
                .where(Run.status.in_(ACTIVE), Run.heartbeat_at < cutoff)
                .values(status="lost", message="the process running it stopped", finished_at=utcnow())
                .returning(Run.id, Run.user_id, Run.task_id, Run.runner)
            ).all()
        for run_id, user_id, task_id, runner in lost:
            self._ended_without_running("lost", run_id, user_id, task_id, runner, "the process running it stopped")
        if lost:
            metrics.LOST_RUNS.inc(len(lost))
        return len(lost)

    @staticmethod
    def _ended_without_running(
        status: str, run_id: uuid.UUID, user_id: uuid.UUID, task_id: uuid.UUID | None, runner: str | None, reason: str
    ) -> None:
        audit.record(
            "run_" + status,
            actor_id="system",
            resource_type="run",
            resource_id=str(run_id),
            outcome=status,
            details={
                "user_id": str(user_id),
                "task_id": str(task_id) if task_id else None,
                "runner": runner,
                "reason": reason[:200],
            },
        )
