"""Pebble, Let's Encrypt's ACME test server (Debian's `pebble`), on loopback for the websites
tests, with pebble-challtestsrv as its DNS: every name resolves to 127.0.0.1, so Pebble's
HTTP-01 check reaches the agent's nginx on the port the test gave it. Nothing leaves loopback.

Pebble's own TLS uses a certificate from a CA the test makes (`ca_bundle`); the certificates it
issues chain to a root it makes at start (`issued_roots`)."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.pki import free_port, make_ca, make_leaf

READY_TIMEOUT = 60.0


@dataclass
class Pebble:
    directory_url: str
    ca_bundle: Path
    management: str
    processes: list[subprocess.Popen[bytes]]

    def issued_roots(self) -> bytes:
        """The root (and intermediates' root) Pebble signs with, to verify what it issued."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context) as answer:  # noqa: S310 - loopback
            root: bytes = answer.read()
        return root

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5):  # noqa: S310 - loopback
            return True
    except OSError:
        return False


@contextlib.contextmanager
def pebble(directory: Path, http_port: int, https_port: int) -> Iterator[Pebble]:
    """Pebble validating HTTP-01 on `http_port` (where the agent's nginx listens)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key, ca = make_ca(directory, "pebble-test-ca")
    cert, key = make_leaf(directory, "localhost", ca_key, ca)
    acme_port, management_port, dns_port, challenge_management = (free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": https_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble.json").write_text(json.dumps(config))
    environment = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after a random pause
        "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce refusals
        "PEBBLE_AUTHZREUSE": "0",  # every order validates again: the tests see nginx answer
    }
    dns = subprocess.Popen(
        ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
         "-management", f"127.0.0.1:{challenge_management}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = subprocess.Popen(
        ["pebble", "-config", str(directory / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
        env=environment, stdout=(directory / "pebble.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    running = Pebble(
        directory_url=f"https://127.0.0.1:{acme_port}/dir",
        ca_bundle=ca_path,
        management=f"https://127.0.0.1:{management_port}",
        processes=[server, dns],
    )
    try:
        context = ssl.create_default_context(cafile=str(ca_path))
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ready(running.directory_url, context):
            assert server.poll() is None, (directory / "pebble.log").read_text()
            assert time.monotonic() < deadline, "pebble did not answer"
            time.sleep(0.05)
        yield running
    finally:
        running.stop()
