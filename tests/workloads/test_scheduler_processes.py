"""Two scheduler processes sharing one PostgreSQL: every occurrence runs exactly once."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import truncate_all
from tests.helpers import make_user
from tests.workloads.test_execution_api import HELLO
from wcp360.authz import Principal
from wcp360.config import load_config
from wcp360.runtime import Runtime
from wcp360.store.models import Run
from wcp360.store.types import utcnow

TASKS = 6
RUN_FOR = 9.0  # seconds each process schedules
START_IN = 4.0  # seconds until the first occurrence: both processes are up by then


@pytest.fixture(autouse=True)
def _empty_database_after(request: pytest.FixtureRequest) -> Iterator[None]:
    # These tests open their own runtimes (not the rt fixture): leave no tasks behind for the next.
    yield
    truncate_all(request.getfixturevalue("pg_database"))


def run_two_schedulers(config_dir: Path, data: Path, tmp_path: Path, seconds: float) -> list[dict[str, int]]:
    """Two `wcp360 scheduler run` processes on the same config and data; their printed stats."""
    env = {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(data)}
    command = [sys.executable, "-m", "wcp360.cli", "scheduler", "run", "--seconds", str(seconds)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=(tmp_path / f"s{i}.log").open("w"))
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
    for i, process in enumerate(processes):
        assert process.returncode == 0, (tmp_path / f"s{i}.log").read_text()[-3000:]
    return [{k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)} for out in outputs]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_schedulers_run_each_occurrence_exactly_once(config_dir: Path, tmp_path: Path) -> None:
    (config_dir / "wcp360.yml").write_text(
        "mode: dev\nscheduler:\n  tick: 100ms\n  max_concurrent_per_user: 1000\n  batch: 4\n"
    )
    (config_dir / "sandbox.yml").write_text("sandbox:\n  precompile: false\n  workers: 1\n")
    data = tmp_path / "data"
    rt = Runtime.open(load_config(config_dir, data))
    try:
        user = make_user(rt, "dev", ["developer"])
        owner = Principal(uuid.UUID(user["id"]), "dev", ("developer",), via="session")
        module_id = uuid.UUID(rt.modules.upload(owner, "hello", HELLO.encode(), text_format=True)["id"])
        start = utcnow().replace(microsecond=0) + timedelta(seconds=START_IN)
        task_ids = {
            uuid.UUID(rt.tasks.create(owner, module_id, f"t{i}", "interval", "1", {}, now=start)["id"])
            for i in range(TASKS)
        }

        stats = run_two_schedulers(config_dir, data, tmp_path, START_IN + RUN_FOR)

        with rt.db.transaction(all_owners=True) as s:
            runs = s.scalars(select(Run).where(Run.task_id.in_(task_ids))).all()
            rows = [(r.task_id, r.scheduled_for, r.status, r.outcome) for r in runs]
    finally:
        rt.close()

    # No scheduler ever lost a race to the unique constraint: the row locks kept them apart.
    assert [s["conflicts"] for s in stats] == [0, 0], stats
    assert sum(s["claimed"] for s in stats) == len(rows), stats
    by_task: dict[uuid.UUID, list[float]] = defaultdict(list)
    for task_id, scheduled_for, status, outcome in rows:
        assert (status, outcome) == ("finished", "ok"), (status, outcome)
        assert scheduled_for is not None
        by_task[task_id].append((scheduled_for - start).total_seconds())
    assert set(by_task) == task_ids
    for occurrences in by_task.values():
        # Every second from the first occurrence on, once each: no duplicate, no gap.
        assert sorted(occurrences) == [float(i) for i in range(len(occurrences))], occurrences
        assert len(occurrences) >= RUN_FOR - 3
    print("claims per process:", [s["claimed"] for s in stats])


# Sleeps a quarter of a second inside a WASI call (poll_oneoff on the monotonic clock).
QUARTER_SECOND = """(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\01\\00\\00\\00") (data (i32.const 24) "\\80\\b2\\e6\\0e\\00\\00\\00\\00")
  (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"""


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_per_user_limit_holds_across_processes(config_dir: Path, tmp_path: Path) -> None:
    """One user, four tasks every second of a 0.25 s module, limit 1: never two of them at once,
    whichever process claimed them (the owners' rows are locked while a claim counts). Every
    finish is a race between the two schedulers for the next claim; without the lock some of
    those races end with both claiming."""
    (config_dir / "wcp360.yml").write_text("mode: dev\nscheduler:\n  tick: 20ms\n  max_concurrent_per_user: 1\n")
    (config_dir / "sandbox.yml").write_text("sandbox:\n  precompile: false\n  workers: 2\n")
    data = tmp_path / "data"
    rt = Runtime.open(load_config(config_dir, data))
    try:
        user = make_user(rt, "dev", ["developer"])
        owner = Principal(uuid.UUID(user["id"]), "dev", ("developer",), via="session")
        module_id = uuid.UUID(rt.modules.upload(owner, "sleep", QUARTER_SECOND.encode(), text_format=True)["id"])
        start = utcnow() + timedelta(seconds=START_IN)
        for i in range(4):
            rt.tasks.create(owner, module_id, f"t{i}", "interval", "1", {}, now=start)
        stats = run_two_schedulers(config_dir, data, tmp_path, START_IN + 7)
        with rt.db.transaction(all_owners=True) as s:
            runs = s.scalars(select(Run).where(Run.user_id == uuid.UUID(user["id"]))).all()
            spans = sorted((r.created_at, r.finished_at) for r in runs if r.status == "finished")
    finally:
        rt.close()
    assert len(spans) >= 15, (spans, stats)
    for (_, finished), (claimed_next, _) in itertools.pairwise(spans):
        assert finished is not None and claimed_next >= finished, spans
