"""The nftables table in a network namespace this test creates (never the host's ruleset):
a banned source cannot connect while another can, and a port outside the policy is closed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from wcp360.config.server import FirewallConfig
from wcp360.defense.bans import parse_network
from wcp360.defense.firewall import NftFirewall, allowed_ports, ruleset
from wcp360.store.types import utcnow

SERVER, CLIENT = "10.213.0.1", ["10.213.0.2", "10.213.0.3"]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    tag = f"{os.getpid() % 100000}"
    server, client = f"wcps{tag}", f"wcpc{tag}"
    sh("ip", "netns", "add", server)
    sh("ip", "netns", "add", client)
    try:
        sh(
            "ip",
            "link",
            "add",
            f"vs{tag}",
            "netns",
            server,
            "type",
            "veth",
            "peer",
            "name",
            f"vc{tag}",
            "netns",
            client,
        )
        sh("ip", "-n", server, "addr", "add", f"{SERVER}/24", "dev", f"vs{tag}")
        for address in CLIENT:
            sh("ip", "-n", client, "addr", "add", f"{address}/24", "dev", f"vc{tag}")
        for ns, dev in ((server, f"vs{tag}"), (client, f"vc{tag}")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield server, client
    finally:
        subprocess.run(["ip", "netns", "del", server], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", client], capture_output=True, check=False)


LISTENER = textwrap.dedent(
    """
    import socket, sys, threading
    def serve(port):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(b"ok"); c.close()
    for port in map(int, sys.argv[1:]):
        threading.Thread(target=serve, args=(port,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)


def can_connect(client_ns: str, source: str, port: int) -> bool:
    probe = (
        f"import socket; s=socket.socket(); s.settimeout(1); s.bind(('{source}',0)); "
        f"s.connect(('{SERVER}',{port})); print(s.recv(2).decode())"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", client_ns, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return result.stdout.strip() == "ok"


@pytest.fixture
def listener(namespaces: tuple[str, str], tmp_path: Path) -> Iterator[None]:
    script = tmp_path / "listen.py"
    script.write_text(LISTENER)
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespaces[0], sys.executable, str(script), "443", "8080"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield
    process.kill()
    process.wait(10)


def test_ruleset_shape() -> None:
    text = ruleset(FirewallConfig(mail=True, ssh=False, extra_tcp_ports=[8443]))
    assert text.startswith("add table inet wcp360\ndelete table inet wcp360\n")  # atomic replace
    assert "policy drop" in text and 'iif "lo" accept' in text and "ct state established,related accept" in text
    assert allowed_ports(FirewallConfig(mail=True, ssh=False, extra_tcp_ports=[8443])) == [25, 80, 443, 465, 587, 8443]


def test_banned_source_is_dropped_in_the_kernel(namespaces: tuple[str, str], listener: None) -> None:
    server_ns, client_ns = namespaces
    good, bad = CLIENT
    assert can_connect(client_ns, bad, 8080)  # no firewall yet: everything open
    firewall = NftFirewall(FirewallConfig(netns=server_ns, ssh=False))
    assert firewall.apply().active, firewall.status.reason
    assert can_connect(client_ns, good, 443) and can_connect(client_ns, bad, 443)
    assert not can_connect(client_ns, good, 8080)  # not in the port policy
    assert firewall.ban(parse_network(bad), utcnow() + timedelta(hours=1))
    assert not can_connect(client_ns, bad, 443)
    assert can_connect(client_ns, good, 443)
    assert "10.213.0.3" in firewall.list_rules()
    assert firewall.unban(parse_network(bad))
    assert can_connect(client_ns, bad, 443)


def test_ban_elements_expire(namespaces: tuple[str, str], listener: None) -> None:
    server_ns, client_ns = namespaces
    firewall = NftFirewall(FirewallConfig(netns=server_ns))
    assert firewall.apply().active
    expires = time.monotonic() + 8
    firewall.ban(parse_network("10.213.0.0/30"), utcnow() + timedelta(seconds=8))  # a whole network
    assert not can_connect(client_ns, CLIENT[0], 443) and not can_connect(client_ns, CLIENT[1], 443)
    time.sleep(max(0.0, expires - time.monotonic()) + 1)
    assert can_connect(client_ns, CLIENT[0], 443)


def test_without_privileges_the_firewall_reports_degraded(tmp_path: Path) -> None:
    firewall = NftFirewall(FirewallConfig(netns="wcp360-no-such-namespace"))
    status = firewall.apply()
    assert not status.active and status.reason
    assert not firewall.ban(parse_network("198.51.100.1"), None)  # nothing to do, nothing raised


def test_bans_from_any_process_reach_the_firewall(namespaces: tuple[str, str], defended: object) -> None:
    from tests.helpers import HOST
    from wcp360.config import load_config
    from wcp360.runtime import Runtime

    assert isinstance(defended, Runtime)
    server_ns, _ = namespaces
    defended.defense.bans.block(HOST, "198.51.100.60", timedelta(hours=1), "before the firewall started")
    status = defended.defense.attach_firewall(NftFirewall(FirewallConfig(netns=server_ns)))
    assert status.active, status.reason
    firewall = defended.defense.firewall
    assert firewall is not None and "198.51.100.60" in firewall.list_rules()  # existing bans are loaded
    other = Runtime.open(load_config(defended.config.config_dir, defended.config.data_dir, env={}))
    try:
        other.defense.bans.block(HOST, "198.51.100.61", timedelta(hours=1), "from the CLI")
        other.defense.bans.unblock(HOST, "198.51.100.60")
    finally:
        other.close()
    defended.defense.bans.reload()  # what the server does every couple of seconds
    rules = firewall.list_rules()
    assert "198.51.100.61" in rules and "198.51.100.60" not in rules
