"""`firewall: enabled: true` switches the firewall on in a real `wcp360 serve`, run inside a network
namespace this test creates: the table and its policy appear, and bans made by the CLI (another
process) become kernel drops with their timeouts, for IPv4 and IPv6, and go away on unblock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECURITY_YML, write_files
from tests.defense.test_firewall import CLIENT, can_connect, listener, namespaces  # noqa: F401 (fixtures)

WCP360_YML = "mode: dev\nfirewall:\n  enabled: true\n  ssh: false\n"


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait for readiness; the bound only turns a hang into a failure."""
    give_up = time.monotonic() + 120
    while not check():
        assert time.monotonic() < give_up, f"never happened: {what}"
        time.sleep(0.1)


def nft(namespace: str, *args: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", *args], capture_output=True, text=True, timeout=20, check=False
    )
    return done.stdout


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    etc = write_files(tmp_path / "etc", {"wcp360.yml": WCP360_YML, "security.yml": TEST_SECURITY_YML})
    return {
        **os.environ,
        "WCP360_CONFIG_DIR": str(etc),
        "WCP360_DATA_DIR": str(tmp_path / "data"),
        "WCP360_ADMIN_PASSWORD": "Str0ng!Passphrase#42",
    }


@pytest.fixture
def server(namespaces: tuple[str, str], env: dict[str, str], tmp_path: Path) -> Iterator[str]:  # noqa: F811
    server_ns, _ = namespaces
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, sys.executable, "-m", "wcp360.cli", "serve", "--listen", "127.0.0.1:8088"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(
            lambda: process.poll() is None and "policy drop" in nft(server_ns, "list", "table", "inet", "wcp360"),
            "the server installed its table",
        )
        yield server_ns
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wcp360.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_serve_switches_the_firewall_on_and_mirrors_cli_bans(
    server: str,
    namespaces: tuple[str, str],  # noqa: F811
    listener: None,  # noqa: F811
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    server_ns, client_ns = namespaces
    good, bad = CLIENT
    table = nft(server_ns, "list", "table", "inet", "wcp360")
    assert "policy drop" in table and "tcp dport { 80, 443 } accept" in table
    assert can_connect(client_ns, good, 443) and can_connect(client_ns, bad, 443)
    assert not can_connect(client_ns, good, 8080)  # not in the port policy

    assert cli(env, "ids", "block", bad, "--duration", "1h", "--reason", "credential stuffing").returncode == 0
    eventually(lambda: bad in nft(server_ns, "list", "set", "inet", "wcp360", "banned_v4"), "the v4 ban in the set")
    element = nft(server_ns, "list", "set", "inet", "wcp360", "banned_v4")
    assert f"{bad} timeout" in element and "expires" in element
    assert not can_connect(client_ns, bad, 443) and can_connect(client_ns, good, 443)

    assert cli(env, "ids", "block", "2001:db8:bad::7", "--duration", "30m").returncode == 0
    eventually(
        lambda: "2001:db8:bad::7 timeout" in nft(server_ns, "list", "set", "inet", "wcp360", "banned_v6"),
        "the v6 ban in the set",
    )

    assert cli(env, "ids", "unblock", bad).returncode == 0
    eventually(lambda: bad not in nft(server_ns, "list", "set", "inet", "wcp360", "banned_v4"), "the unblock")
    assert can_connect(client_ns, bad, 443)

    events = [json.loads(line) for line in (tmp_path / "data" / "log" / "audit.log").read_text().splitlines()]
    applied = [e for e in events if e.get("action") == "firewall_apply"]
    assert applied and applied[0]["details"]["active"] is True
