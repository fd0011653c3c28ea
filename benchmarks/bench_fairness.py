"""A legitimate user's trivial run while another account floods the worker pool with slow runs.

    uv run python benchmarks/bench_fairness.py [--requests 200] [--rounds 3] [--flooders 60] [--at-once]

A real server (uvicorn, 4 sandbox workers, the default per-account limit: half the workers) and two
accounts. The flood: `--flooders` threads of one account, spread over its session and two API
tokens, each posting a module that sleeps 2 s inside WASI `poll_oneoff` (a host call: neither fuel
nor epochs stop it), the attack of issue 9: sixty sleeping runs kept in flight. A refused flooder
retries after the Retry-After it was given; with --at-once it retries immediately, which turns the
attack into a request flood (a rate limiter's job: see benchmarks/README.md).
The victim: one client running a trivial module back to back. Reported: the victim's p50/p99 idle
and under the flood, medians of rounds, alternating idle and flood rounds; target p99 <= 3x idle.
Rate limits are on but set never to refuse, so only the run limits and the fair queue protect.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import free_port, start_server, summary, wait_ready, write_config

PASSWORD = "Quiet!Harbour#2026x"
HELLO = """(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1) (data (i32.const 16) "hello\\n") (data (i32.const 0) "\\10\\00\\00\\00\\06\\00\\00\\00")
  (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
# poll_oneoff on the monotonic clock for 2 s (0x77359400 ns).
SLEEPER = """(module (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\01\\00\\00\\00") (data (i32.const 24) "\\00\\94\\35\\77\\00\\00\\00\\00")
  (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"""
FILES = {"sandbox.yml": "sandbox:\n  workers: 4\n  precompile: false\n"}


def open_runtime(data_dir: str) -> Any:
    from wcp360.config import load_config
    from wcp360.logs import configure_logging
    from wcp360.runtime import Runtime

    configure_logging("warning")
    return Runtime.open(load_config(Path(data_dir) / "etc", Path(data_dir) / "data", env={}))


def serve(port: int, data_dir: str) -> None:
    import uvicorn

    from wcp360.api.app import create_app
    from wcp360.audit.setup import trail_scope

    rt = open_runtime(data_dir)
    with trail_scope(rt.config, rt.db, forward=False):
        uvicorn.run(create_app(rt), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def prepare(data_dir: str) -> dict[str, Any]:
    from wcp360.authz import Principal

    write_config(Path(data_dir) / "etc", FILES)
    rt = open_runtime(data_dir)
    out: dict[str, Any] = {}
    for name, source in (("victim", HELLO), ("flood", SLEEPER)):
        user = rt.users.create(Principal.host_admin(), name, f"{name}@example.test", PASSWORD, ["developer"])
        owner = Principal(uuid.UUID(user.id), name, ("developer",), via="session")
        module = rt.modules.upload(owner, name, source.encode(), text_format=True)
        credentials = []
        if name == "flood":
            # API tokens need the account's 2FA in the default config; the session signs in with it.
            import pyotp

            totp = pyotp.TOTP(rt.two_factor.enroll(owner)["secret"])
            rt.two_factor.confirm(owner, totp.now())
            credentials.append(rt.auth.login(name, PASSWORD, totp.at(time.time() + 30)).access_token)
            credentials += [
                rt.api_tokens.create(owner, f"t{i}", ["modules:execute", "modules:read"], 30, [])["token"]
                for i in range(2)
            ]
        else:
            credentials.append(rt.auth.login(name, PASSWORD).access_token)
        out[name] = {"module": module.id, "credentials": credentials}
    rt.close()
    return out


def post(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("POST", path, body=b"{}", headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status, float(response.getheader("retry-after") or 0)


def victim_round(port: int, accounts: dict[str, Any], requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    path = f"/api/v1/modules/{accounts['victim']['module']}/execute"
    token = accounts["victim"]["credentials"][0]
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        status, _ = post(conn, path, token)
        if status != 200:
            raise RuntimeError(f"victim run: HTTP {status}")
        latencies.append(time.perf_counter() - started)
    return latencies


def flood(
    port: int, accounts: dict[str, Any], flooders: int, stop: threading.Event, counts: dict[int, int], at_once: bool
) -> None:
    path = f"/api/v1/modules/{accounts['flood']['module']}/execute"
    credentials = accounts["flood"]["credentials"]
    lock = threading.Lock()

    def one(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while not stop.is_set():
            status, retry_after = post(conn, path, credentials[index % len(credentials)])
            with lock:
                counts[status] = counts.get(status, 0) + 1
            if retry_after and not at_once:
                stop.wait(retry_after)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(flooders)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flooders", type=int, default=60)
    parser.add_argument("--at-once", action="store_true", help="flooders ignore Retry-After")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        accounts = prepare(data_dir)
        port = free_port()
        server = start_server(serve, port, data_dir, daemon=False)
        try:
            wait_ready(port)
            victim_round(port, accounts, 20)  # warm-up: workers started, caches filled
            idle: list[dict[str, float]] = []
            flooded: list[dict[str, float]] = []
            counts: dict[int, int] = {}
            for _ in range(args.rounds):
                idle.append(summary(victim_round(port, accounts, args.requests)))
                stop = threading.Event()
                flood_args = (port, accounts, args.flooders, stop, counts, args.at_once)
                attacker = threading.Thread(target=flood, args=flood_args)
                attacker.start()
                time.sleep(3)  # let the flood take its slots (a benchmark setting, not a test)
                flooded.append(summary(victim_round(port, accounts, args.requests)))
                stop.set()
                attacker.join()
        finally:
            server.terminate()
            server.join(60)

    def median(rows: list[dict[str, float]], key: str) -> float:
        values = sorted(row[key] for row in rows)
        return values[len(values) // 2]

    report = {
        "idle": {k: median(idle, k) for k in ("p50_ms", "p99_ms")},
        "flood": {k: median(flooded, k) for k in ("p50_ms", "p99_ms")},
        "flood_answers": counts,
        "flood_retries": "at once" if args.at_once else "after Retry-After",
    }
    report["p99_ratio"] = round(report["flood"]["p99_ms"] / report["idle"]["p99_ms"], 2)
    report["p50_ratio"] = round(report["flood"]["p50_ms"] / report["idle"]["p50_ms"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
