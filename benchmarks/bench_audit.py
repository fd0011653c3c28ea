"""Durable audit appends: `always` and `batch` (group commit) beside raw O_APPEND + fsync, same run.

    uv run python benchmarks/bench_audit.py [--events 2000] [--threads 1 16] [--rounds 5]

Each acknowledged event is on disk (fsync returned) in every mode. The baseline writes a ~300-byte
line and fsyncs it, in a loop, from one thread: the ceiling for one-fsync-per-event. This disk's
fsync rate drifts by 10-20% within a minute, so every measurement has its own baseline taken just
before it, and the reported ratio is the median of those per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import summary

from wcp360.audit.logfile import AuditLogFile
from wcp360.audit.signing import SigningKeys
from wcp360.audit.writer import AuditWriter

EVENT = {
    "ts": "2026-11-23T12:00:00.000000Z",
    "action": "login_failure",
    "outcome": "failure",
    "actor_id": None,
    "resource_type": "user",
    "resource_id": None,
    "ip_address": "127.0.0.1",
    "user_agent": "bench/1.0",
    "request_id": "0123456789abcdef",
    "channel": "api",
    "details": {"username": "alice", "reason": "bad_password"},
}


def raw_fsync(directory: Path, count: int) -> float:
    fd = os.open(directory / "raw.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    line = (json.dumps(EVENT) + "\n").encode()
    started = time.perf_counter()
    for _ in range(count):
        os.write(fd, line)
        os.fsync(fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return count / elapsed


def trail(directory: Path, mode: str, count: int, threads: int) -> dict[str, Any]:
    log = AuditLogFile(directory / mode / str(threads), SigningKeys(directory / "keys"), 10**9, 10, False, 1000)
    writer = AuditWriter(log, fsync=mode)  # type: ignore[arg-type]
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        mine = []
        for _ in range(count // threads):
            started = time.perf_counter()
            writer.submit(dict(EVENT))
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    writer.close()
    return {"mode": mode, "threads": threads, "events_per_s": round(len(latencies) / elapsed), **summary(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as scratch:
        directory = Path(scratch)
        rows = []
        for threads in args.threads:
            for mode in ("always", "batch"):
                rounds = []
                for number in range(args.rounds):
                    baseline = raw_fsync(directory, args.events)
                    row = trail(directory / str(number), mode, args.events, threads)
                    rounds.append(
                        {**row, "raw_append_fsync_per_s": round(baseline), "ratio": row["events_per_s"] / baseline}
                    )
                middle = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
                rows.append(
                    {
                        **{k: v for k, v in middle.items() if k != "ratio"},
                        "ratio_to_raw_fsync": round(middle["ratio"], 2),
                        "ratios_of_rounds": sorted(round(r["ratio"], 2) for r in rounds),
                    }
                )
        print(json.dumps({"runs": rows}, indent=2))


if __name__ == "__main__":
    main()
