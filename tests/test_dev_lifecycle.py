"""`python3 dev.py serve` and `dev.py cli` as a new developer uses them: the address is printed,
the CLI reaches the server's state in one short command, a second server is refused, and SIGTERM
stops the server (nothing left holding the port)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parent.parent


def dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "WCP360_DEV_STATE": str(tmp_path / "state"), "WCP360_ADMIN_PASSWORD": "Str0ng!Passphrase#42"}


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    announced = ""
    while "dev.py: WCP360 on" not in announced:  # readiness line (blocks until printed)
        line = process.stderr.readline()
        assert line, f"dev.py serve ended: {announced}"
        announced += line
    assert f"http://127.0.0.1:{port}" in announced and "dev.py cli" in announced
    give_up = time.monotonic() + 300  # a bound against a hang, not a timing assumption
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            assert process.poll() is None and time.monotonic() < give_up, "the server never answered"
            time.sleep(0.1)
    yield process, port
    if process.poll() is None:
        process.kill()
        process.wait(60)


def test_the_dev_lifecycle(served: tuple[subprocess.Popen[str], int], env: dict[str, str]) -> None:
    process, port = served
    listed = dev(env, "cli", "admin", "list-users", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [u["username"] for u in json.loads(listed.stdout)] == ["admin"]

    second = dev(env, "serve", "--listen", f"127.0.0.1:{free_port()}")
    assert second.returncode == 1 and "already running" in second.stderr

    process.send_signal(signal.SIGTERM)
    assert process.wait(120) == 0
    with socket.socket() as sock:  # the port is free again: no server left behind
        sock.bind(("127.0.0.1", port))
    assert not (Path(env["WCP360_DEV_STATE"]) / "serve.pid").exists()


def test_the_cli_without_dev_state_says_what_to_do(env: dict[str, str]) -> None:
    result = dev(env, "cli", "admin", "list-users")
    assert result.returncode == 2 and "dev.py serve" in result.stderr
    assert not Path(env["WCP360_DEV_STATE"]).exists()
