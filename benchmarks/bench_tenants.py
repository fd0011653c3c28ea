"""Creating a tenant through the API beside the bare host work it wraps, same run.

    python benchmarks/bench_tenants.py [--tenants 40] [--rounds 3]      # as root

- api: POST /api/v1/tenants on a real `wcp360 serve` (dev mode, SQLite, the in-process agent as
  root): authentication, the policy function, name checks, the agent's verb (useradd, groupadd, the
  home and its three directories, the agent's state file), the tenant row, two audit events
  (the agent's and the panel's), the answer.
- bare: `groupadd` + `useradd` + mkdir/chown/chmod of the home and its three directories: the
  host work alone, the floor.

Rounds alternate bare and api so drift hits both alike; each round removes what it made. Medians
of the rounds' p50 and p99 are reported.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import summary, wcp360_server

PASSWORD = "Quiet!Harbour#2026x"
UID_MIN, UID_MAX = 43000, 43999
FILES = {
    # The reseller signs in with a password only here: 2FA is not what is measured.
    "security.yml": "auth:\n  two_factor:\n    required_roles: []\n",
    "rate_limit.yml": "rate_limiting:\n  enabled: false\n",
}


def bare_round(root: Path, names: list[str]) -> list[float]:
    timings = []
    for index, name in enumerate(names):
        started = time.perf_counter()
        uid = str(UID_MIN + 500 + index)
        subprocess.run(["groupadd", "--gid", uid, name], check=True)
        subprocess.run(
            ["useradd", "--uid", uid, "--gid", uid, "--no-create-home", "--home-dir", str(root / name),
             "--shell", "/usr/sbin/nologin", "--no-user-group", name],
            check=True,
        )  # fmt: skip
        home = root / name
        home.mkdir(mode=0o750)
        os.chown(home, int(uid), int(uid))
        for sub in ("public", "logs", "tmp"):
            (home / sub).mkdir(mode=0o750)
            os.chown(home / sub, int(uid), int(uid))
        timings.append(time.perf_counter() - started)
    for name in names:
        subprocess.run(["userdel", name], check=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)
        shutil.rmtree(root / name)
    return timings


def api_round(port: int, token: str, names: list[str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timings, ids = [], []
    for name in names:
        started = time.perf_counter()
        conn.request("POST", "/api/v1/tenants", body=json.dumps({"name": name}), headers=headers)
        response = conn.getresponse()
        body = response.read()
        timings.append(time.perf_counter() - started)
        if response.status != 201:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
        ids.append((json.loads(body)["id"], name))
    for tenant_id, name in ids:
        conn.request("DELETE", f"/api/v1/tenants/{tenant_id}?confirm={name}", headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"delete: HTTP {response.status}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: tenants are Linux users")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        homes = root / "bare-homes"
        homes.mkdir()
        files = {
            **FILES,
            "wcp360.yml": (
                "mode: dev\ntenants:\n"
                f"  home_root: {root / 'www'}\n  archive_dir: {root / 'archives'}\n"
                f"  uid_min: {UID_MIN}\n  uid_max: {UID_MIN + 499}\n"
            ),
        }
        results: dict[str, list[dict[str, float]]] = {"bare": [], "api": []}
        (root / "server").mkdir()
        with wcp360_server(root / "server", files, "bench", PASSWORD, roles="reseller") as (port, token):
            for round_number in range(args.rounds):
                names = [f"wb{round_number}x{i}" for i in range(args.tenants)]
                results["bare"].append(summary(bare_round(homes, [f"{n}b" for n in names])))
                results["api"].append(summary(api_round(port, token, names)))
    report = {}
    for kind, rounds in results.items():
        report[kind] = {
            key: round(sorted(r[key] for r in rounds)[len(rounds) // 2], 2) for key in ("p50_ms", "p99_ms")
        }
    report["p50_ratio_api_bare"] = round(report["api"]["p50_ms"] / report["bare"]["p50_ms"], 2)
    report["p99_ratio_api_bare"] = round(report["api"]["p99_ms"] / report["bare"]["p99_ms"], 2)
    print(json.dumps({"tenants_per_round": args.tenants, "rounds": args.rounds, **report}, indent=2))


if __name__ == "__main__":
    main()
