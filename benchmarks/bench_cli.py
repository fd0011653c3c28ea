"""CLI start-up: each command's wall time beside `python -c pass`, measured in the same run.

    uv run python benchmarks/bench_cli.py [--rounds 7]

A throwaway installation (dev mode, SQLite, one account) and the venv's `wcp360` entry point, run
as a user runs it. Reported: the median wall time of `--rounds` runs per command, and the
heaviest imports of `wcp360 version` and `wcp360 admin list-users` from `python -X importtime`.
Targets (issue 11): --help and version under 0.3 s; admin list-users under 1.5 s; doctor and
config validate under 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [
    ["version"],
    ["--help"],
    ["admin", "list-users"],
    ["config", "validate"],
    ["audit", "verify"],
    ["doctor"],
]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def heaviest_imports(command: list[str], env: dict[str, str], top: int = 5) -> list[tuple[str, float]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wcp360.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            if cumulative.isdigit() and name.count(".") == 0 and not name.startswith("_"):
                rows.append((name, int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    wcp360 = str(Path(sys.executable).parent / "wcp360")
    with tempfile.TemporaryDirectory() as root:
        etc, data = Path(root) / "etc", Path(root) / "data"
        etc.mkdir(mode=0o700)
        (etc / "wcp360.yml").write_text("mode: dev\n")
        env = {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(data)}
        subprocess.run([wcp360, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [wcp360, "admin", "create-user", "-u", "alice", "--email", "a@example.test", "--roles", "developer",
             "--password", "-"],
            env=env, input=b"Str0ng!Passphrase#42\n", check=True, capture_output=True,
        )
        report: dict[str, object] = {}
        baseline = [timed([sys.executable, "-c", "pass"], env) for _ in range(args.rounds)]
        report["python -c pass"] = round(statistics.median(baseline), 3)
        for command in COMMANDS:
            runs = [timed([wcp360, *command], env) for _ in range(args.rounds)]
            report[" ".join(command)] = round(statistics.median(runs), 3)
        report["imports: version"] = heaviest_imports(["version"], env)
        report["imports: admin list-users"] = heaviest_imports(["admin", "list-users"], env)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
