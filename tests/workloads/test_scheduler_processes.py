"""Two scheduler processes sharing one PostgreSQL: every occurrence runs exactly once."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from wcp360.store.scope import SYSTEM
from wcp360.store.types import utcnow

TASKS = 6
OCCURRENCES = 6  # finished runs per task the first test waits for


@pytest.fixture(autouse=True)
def _empty_database_after(request: pytest.FixtureRequest) -> Iterator[None]:
    # These tests open their own runtimes (not the rt fixture): leave no tasks behind for the next.
    yield
    truncate_all(request.getfixturevalue("pg_database"))


@contextmanager
def two_schedulers(config_dir: Path, data: Path, tmp_path: Path) -> Iterator[list[dict[str, int]]]:
    """Two `wcp360 scheduler run` processes on the same config and data, up and claiming when this
    yields (each printed its readiness line); on exit both are stopped (SIGTERM: they finish what
    they claimed) and the list holds their printed stats."""
    env = {**os.environ, "WCP360_CONFIG_DIR": str(config_dir), "WCP360_DATA_DIR": str(data)}
    command = [sys.executable, "-m", "wcp360.cli", "scheduler", "run"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=(tmp_path / f"s{i}.log").open("w"))
        for i in range(2)
    ]
    stats: list[dict[str, int]] = []
    try:
        for i, process in enumerate(processes):
            assert process.stdout is not None
            ready = process.stdout.readline().decode()
            assert ready.strip() == "scheduler started", (tmp_path / f"s{i}.log").read_text()[-3000:]
        yield stats
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    for i, process in enumerate(processes):
        assert process.returncode == 0, (tmp_path / f"s{i}.log").read_text()[-3000:]
    stats.extend({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)} for out in outputs)


def wait_until(done: Callable[[], bool], what: str) -> None:
    """Readiness, not timing: poll the database; the bound only turns a hang into a failure."""
    give_up = time.monotonic() + 600
    while not done():
        assert time.monotonic() < give_up, f"never happened: {what}"
        time.sleep(0.2)


def finished_runs(rt: Runtime, **where: object) -> list[Run]:
    with rt.db.transaction(SYSTEM) as s:
        query = select(Run).where(Run.status == "finished")
        for name, value in where.items():
            column = getattr(Run, name)
            query = query.where(column.in_(value) if isinstance(value, set) else column == value)
        return list(s.scalars(query).all())


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
        module_id = uuid.UUID(rt.modules.upload(owner, "hello", HELLO.encode(), text_format=True).id)
        with two_schedulers(config_dir, data, tmp_path) as stats:
            # Both processes are claiming: the first occurrence is the next whole second.
            start = utcnow().replace(microsecond=0) + timedelta(seconds=1)
            task_ids = {
                uuid.UUID(rt.tasks.create(owner, module_id, f"t{i}", "interval", "1", {}, now=start).id)
                for i in range(TASKS)
            }

            def enough() -> bool:
                per_task = defaultdict(int)
                for run in finished_runs(rt, task_id=task_ids):
                    per_task[run.task_id] += 1
                return len(per_task) == TASKS and min(per_task.values()) >= OCCURRENCES

            wait_until(enough, f"{OCCURRENCES} finished occurrences of every task")
            for task_id in task_ids:
                rt.tasks.pause(owner, task_id)
        with rt.db.transaction(SYSTEM) as s:
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
        assert len(occurrences) >= OCCURRENCES
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
    those races end with both claiming. Waits for 15 finished runs, however long a loaded
    machine takes to start the processes and run them."""
    (config_dir / "wcp360.yml").write_text("mode: dev\nscheduler:\n  tick: 20ms\n  max_concurrent_per_user: 1\n")
    (config_dir / "sandbox.yml").write_text("sandbox:\n  precompile: false\n  workers: 2\n")
    data = tmp_path / "data"
    rt = Runtime.open(load_config(config_dir, data))
    try:
        user = make_user(rt, "dev", ["developer"])
        user_id = uuid.UUID(user["id"])
        owner = Principal(user_id, "dev", ("developer",), via="session")
        module_id = uuid.UUID(rt.modules.upload(owner, "sleep", QUARTER_SECOND.encode(), text_format=True).id)
        with two_schedulers(config_dir, data, tmp_path) as stats:
            start = utcnow() + timedelta(seconds=1)
            tasks = [rt.tasks.create(owner, module_id, f"t{i}", "interval", "1", {}, now=start) for i in range(4)]
            wait_until(lambda: len(finished_runs(rt, user_id=user_id)) >= 15, "15 finished runs")
            for task in tasks:
                rt.tasks.pause(owner, uuid.UUID(task.id))
        spans = sorted((r.created_at, r.finished_at) for r in finished_runs(rt, user_id=user_id))
    finally:
        rt.close()
    assert len(spans) >= 15, (spans, stats)
    for (_, finished), (claimed_next, _) in itertools.pairwise(spans):
        assert finished is not None and claimed_next >= finished, spans
