"""Helpers for the benchmarks: a real uvicorn server in its own process and a keep-alive client."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Rate limits on (their cost is part of every request) but far too high ever to refuse: the
# benchmarks send thousands of requests a second from one address and one account.
_HIGH = "{requests_per_minute: 100000000, burst: 1000000}"
NEVER_REFUSING_RATE_LIMITS = (
    f"rate_limiting:\n  enabled: true\n  global: {_HIGH}\n  per_user: {_HIGH}\n"
    f'  per_endpoint:\n    "/api/v1/modules/*/execute": {_HIGH}\n'
)


def write_config(etc: Path, files: dict[str, str]) -> None:
    """A dev-mode config directory with the never-refusing rate limits, plus `files`."""
    etc.mkdir(mode=0o700, exist_ok=True)
    for name, text in {"wcp360.yml": "mode: dev\n", "rate_limit.yml": NEVER_REFUSING_RATE_LIMITS, **files}.items():
        (etc / name).write_text(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(target: Callable[..., None], *args: Any, daemon: bool = True) -> multiprocessing.Process:
    # Not daemonic when the server starts processes of its own (the sandbox worker pool).
    process = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=daemon)
    process.start()
    return process


def wait_ready(port: int, path: str = "/healthz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not become ready")


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": self.requests,
            "rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(0.50) * 1000, 3),
            "p99_ms": round(self.percentile(0.99) * 1000, 3),
        }


def load(
    port: int,
    path: str,
    headers: dict[str, str],
    requests: int,
    clients: int,
    name: str,
    method: str = "GET",
    body: bytes | None = None,
) -> Result:
    """`clients` threads, each on one keep-alive connection, sharing `requests` requests."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        for _ in range(per_client):
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: HTTP {response.status}")
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(name, per_client * clients, time.perf_counter() - started, latencies)


def median_of(results: list[Result], attribute: str) -> float:
    return statistics.median(
        getattr(r, attribute) if attribute == "throughput" else r.percentile(float(attribute)) for r in results
    )


def medians(results: list[Result]) -> dict[str, float]:
    """Throughput, p50 and p99 of a benchmark's rounds: the median of each over the rounds."""
    return {
        "rps": round(statistics.median(r.throughput for r in results), 1),
        "p50_ms": round(statistics.median(r.percentile(0.5) for r in results) * 1000, 3),
        "p99_ms": round(statistics.median(r.percentile(0.99) for r in results) * 1000, 3),
    }


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(0.99 * len(ordered))] * 1000, 3),
    }


@contextmanager
def wcp360_server(
    root: Path,
    files: dict[str, str],
    username: str,
    password: str,
    address: str | None = None,
    roles: str = "developer",
) -> Iterator[tuple[int, str]]:
    """A real `wcp360 serve` in its own process (config `files`, data under `root`) with one account
    (`roles`); yields (port, that account's access token). `address` is sent as X-Forwarded-For."""
    etc = root / "etc"
    etc.mkdir(mode=0o700)
    for name, text in {"wcp360.yml": "mode: dev\n", **files}.items():
        (etc / name).write_text(text)
    env = {
        **os.environ,
        "WCP360_CONFIG_DIR": str(etc),
        "WCP360_DATA_DIR": str(root / "data"),
        "WCP360_LOG_LEVEL": "error",
    }
    (root / "data").mkdir(mode=0o700)  # the CLI refuses to invent an installation
    subprocess.run(
        [
            sys.executable,
            "-m",
            "wcp360.cli",
            "admin",
            "create-user",
            "--username",
            username,
            "--email",
            f"{username}@example.test",
            "--roles",
            roles,
            "--password",
            "-",
        ],
        input=password + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "wcp360.cli", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", **({"X-Forwarded-For": address} if address else {})}
        conn.request(
            "POST", "/api/v1/auth/login", body=json.dumps({"username": username, "password": password}), headers=headers
        )
        yield port, json.loads(conn.getresponse().read())["access_token"]
    finally:
        server.terminate()
        server.wait(60)
