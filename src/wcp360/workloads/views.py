"""What the workloads services return: modules, their compile state, runs, snapshots, tasks and
shares, as frozen typed views (the API's response models, the CLI's rows)."""

from __future__ import annotations

from typing import Any, Literal

from wcp360.views import View


class CompileView(View):
    state: Literal["compiling", "ready", "failed"]
    seconds: float | None  # so far while compiling; what it took once ready or failed
    error: str | None


class ModuleView(View):
    id: str
    name: str
    version: int
    owner_id: str
    size: int
    digest: str
    status: Literal["active", "quarantined"]
    risk_score: int
    findings: list[dict[str, Any]]
    compile: CompileView
    created_at: str


class RunView(View):
    run_id: str
    module_id: str
    status: Literal["queued", "running", "finished", "refused", "lost", "skipped"]
    outcome: str | None
    exit_code: int | None
    stdout: str | None
    stderr: str | None
    message: str | None
    duration_ms: int | float | None  # as measured: a float for a run just finished
    fuel_used: int | None
    memory_peak_bytes: int | None
    user_id: str
    task_id: str | None
    scheduled_for: str | None
    snapshot_id: str | None
    restored_from: str | None
    created_at: str | None
    finished_at: str | None


class SnapshotView(View):
    id: str
    owner_id: str
    module_id: str
    module_digest: str
    run_id: str | None
    size: int
    checksum: str
    created_at: str


class TaskView(View):
    id: str
    name: str
    module_id: str
    owner_id: str
    kind: str
    schedule: str | None
    args: list[str]
    stdin: str
    env: list[str]  # names only: the values stay sealed
    priority: int
    missed: str
    status: str
    next_run_at: str | None
    last_run_at: str | None
    created_at: str
