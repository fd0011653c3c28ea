"""Two real server processes sharing Redis enforce one rate limit between them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from tests.conftest import write_files
from tests.test_serve import free_port

REDIS_DB = 15  # this test's own database on the loopback Redis; flushed before use


def _serve(etc: Path, data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WCP360_CONFIG_DIR": str(etc), "WCP360_DATA_DIR": str(data)}
    process = subprocess.Popen(
        [sys.executable, "-m", "wcp360.cli", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not start")


def test_redis_limits_hold_across_two_servers(tmp_path: Path) -> None:
    redis.Redis(db=REDIS_DB).flushdb()
    rate = f"""\
rate_limiting:
  enabled: true
  storage: "redis://127.0.0.1:6379/{REDIS_DB}"
  per_endpoint:
    "/healthz": {{requests_per_minute: 6, burst: 3}}
"""
    etc = write_files(tmp_path / "etc", {"wcp360.yml": "mode: dev\n", "rate_limit.yml": rate})
    ports = [free_port(), free_port()]
    servers = [_serve(etc, tmp_path / f"data{i}", port, tmp_path / f"s{i}.log") for i, port in enumerate(ports)]
    try:
        codes = [httpx.get(f"http://127.0.0.1:{ports[i % 2]}/healthz").status_code for i in range(10)]
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
    # burst 3 -> four requests in all, whichever server they reach; alone, each would allow four.
    assert codes.count(200) == 4 and codes[:4] == [200] * 4
    assert set(codes[4:]) == {429}
    assert redis.Redis(db=REDIS_DB).keys("wcp360:rl:*")
