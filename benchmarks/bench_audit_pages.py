"""A page of the audit trail from a long log: the backwards reader beside the whole-log scan it replaced.

    uv run python benchmarks/bench_audit_pages.py [--events 1000000] [--rounds 5]

The trail is written by the real writer (chained, checkpoints every 100 events, one file, no
rotation: the worst case for a scan). Pages of 50: the newest page, one from the middle
(`before_seq` = half), and a filtered page (one action in three). Beside them, in the same run,
the reader before issue 12: every event of every file parsed and filtered, then the page taken.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from wcp360.audit.logfile import AuditLogFile
from wcp360.audit.pages import newest_first
from wcp360.audit.search import EventFilter
from wcp360.audit.signing import SigningKeys
from wcp360.audit.tail import iter_events

ACTIONS = ["login_success", "module_execute", "user_update"]


def write_trail(directory: Path, events: int) -> None:
    log = AuditLogFile(directory / "log", SigningKeys(directory / "keys"), 10**12, 10, False, 100)
    batch = 1000
    try:
        for start in range(0, events, batch):
            log.append(
                [
                    {
                        "action": ACTIONS[i % 3],
                        "actor_id": "6f1c4d2e-8d7a-4a8e-9a51-1c2b3d4e5f60",
                        "outcome": "success",
                        "ts": "2026-11-28T08:00:00.000000Z",
                        "resource_type": "module",
                        "resource_id": "2b9e0c7a-4f1d-4c3b-8e6a-9d8c7b6a5f40",
                        "ip_address": "203.0.113.7",
                        "details": {"run_id": f"run-{i}", "duration_ms": i % 97},
                    }
                    for i in range(start, min(events, start + batch))
                ],
                False,
            )
    finally:
        log.close()


def old_reader(directory: Path, where: EventFilter, limit: int, before: int | None) -> list[dict[str, object]]:
    matches = [r for r in iter_events(directory) if where.matches(r) and (before is None or int(r["seq"]) < before)]
    return matches[-limit:][::-1]


def timed(function: object, *args: object) -> float:
    started = time.perf_counter()
    function(*args)  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        started = time.perf_counter()
        write_trail(directory, args.events)
        log = directory / "log"
        report: dict[str, object] = {
            "events": args.events,
            "log_bytes": (log / "audit.log").stat().st_size,
            "write_s": round(time.perf_counter() - started, 1),
        }
        cases = {
            "newest": (EventFilter(), None),
            "middle": (EventFilter(), args.events // 2),
            "filtered": (EventFilter(action="user_update"), args.events // 2),
        }
        for case, (where, before) in cases.items():
            pages = [timed(newest_first, log, where, 50, before) for _ in range(args.rounds)]
            report[f"{case}_page_ms"] = round(statistics.median(pages), 2)
            assert newest_first(log, where, 50, before).items == old_reader(log, where, 50, before)
        report["old_reader_newest_ms"] = round(timed(old_reader, log, EventFilter(), 50, None), 1)
        report["ratio_old_new_newest"] = round(
            float(report["old_reader_newest_ms"]) / float(report["newest_page_ms"]), 0  # type: ignore[arg-type]
        )
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
