"""Abuse defense: limiter decision cost, and a legitimate client's latency during a login flood.

    uv run python benchmarks/bench_defense.py [--attackers 16] [--requests 1500]

(a) GCRA decisions per key, in process and on the loopback Redis (one Lua call each).
(b) A real server (uvicorn in its own process, SQLite, argon2id at OWASP cost, seed rate limits and
    IDS rules, 127.0.0.1 as trusted proxy). A legitimate client calls GET /api/v1/auth/me: first on
    the idle server, then while `attackers` threads (in another process) post wrong passwords for
    random usernames, each from a fresh address (X-Forwarded-For) so that per-address limits and
    bans alone cannot stop them. Same run, same client; ratio of p99s (target <= 3x idle).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import summary, wcp360_server

PASSWORD = "Quiet!Harbour#2026x"


def limiter_cost(decisions: int = 20000) -> dict[str, float]:
    import redis.asyncio

    from wcp360.defense.gcra import MemoryLimiter, Quota, RedisLimiter

    quota = Quota(per_minute=1e9, burst=10)
    memory = MemoryLimiter()
    started = time.perf_counter()
    for i in range(decisions):
        memory.hit_now(f"k{i % 1000}", quota)
    memory_us = (time.perf_counter() - started) / decisions * 1e6

    async def redis_run(count: int) -> float:
        client = redis.asyncio.Redis()
        limiter = RedisLimiter(client, prefix=f"bench:{uuid.uuid4().hex}:")
        await limiter.hit("warm", quota)
        begin = time.perf_counter()
        for i in range(count):
            await limiter.hit(f"k{i % 1000}", quota)
        elapsed = time.perf_counter() - begin
        await client.aclose()
        return elapsed / count * 1e6

    return {
        "memory_us_per_decision": round(memory_us, 2),
        "redis_us_per_decision": round(asyncio.run(redis_run(decisions // 4)), 1),
    }


def attack(port: int, seconds: float, threads: int, result_file: str) -> None:
    import threading

    counts: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            address = f"100.{64 + rng.randrange(64)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            username = rng.choice(["legit", "admin", "root", f"user{rng.randrange(1000)}"])
            body = json.dumps({"username": username, "password": f"Guess!{rng.randrange(10**9)}x"})
            try:
                conn.request(
                    "POST",
                    "/api/v1/auth/login",
                    body=body,
                    headers={"Content-Type": "application/json", "X-Forwarded-For": address},
                )
                status = conn.getresponse()
                status.read()
                code = status.status
            except (OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                code = 0
            with lock:
                counts[code] = counts.get(code, 0) + 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    Path(result_file).write_text(json.dumps(counts))


def measure(port: int, token: str, requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "198.51.100.10"}
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        conn.request("GET", "/api/v1/auth/me", headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"legitimate request failed: HTTP {response.status}")
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attackers", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    report: dict[str, Any] = {"limiter": limiter_cost()}
    rate = (
        'rate_limiting:\n  trusted_proxies: ["127.0.0.0/8"]\n'
        "  global: {requests_per_minute: 100000, burst: 10000}\n"
        "  per_user: {requests_per_minute: 100000, burst: 10000}\n"
    )
    with (
        tempfile.TemporaryDirectory() as scratch,
        wcp360_server(Path(scratch), {"rate_limit.yml": rate}, "legit", PASSWORD, address="198.51.100.10") as (
            port,
            token,
        ),
    ):
        root = Path(scratch)
        measure(port, token, 200)  # warm-up
        idle = measure(port, token, args.requests)
        result_file = str(root / "attack.json")
        # Long enough to cover the measurement (about as long as the idle phase) with margin.
        flood_seconds = 3 + 3 * sum(idle)
        attacker = multiprocessing.get_context("spawn").Process(
            target=attack, args=(port, flood_seconds, args.attackers, result_file), daemon=True
        )
        attacker.start()
        time.sleep(3)  # let the flood build up
        flooded = measure(port, token, args.requests)
        attacker.join(flood_seconds + 60)
        attacks = {int(k): v for k, v in json.loads(Path(result_file).read_text()).items()}
    report["login_flood"] = {
        "attackers": args.attackers,
        "legit_requests_per_phase": args.requests,
        "idle": summary(idle),
        "during_flood": summary(flooded),
        "p50_ratio": round(statistics.median(flooded) / statistics.median(idle), 2),
        "p99_ratio": round(sorted(flooded)[int(0.99 * len(flooded))] / sorted(idle)[int(0.99 * len(idle))], 2),
        "flood_seconds": round(flood_seconds, 1),
        "attack_responses": dict(sorted(attacks.items())),
        "attack_attempts_per_s": round(sum(attacks.values()) / flood_seconds),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
