"""Slow-header clients and connection floods against a real `wcp360 serve`: a connection whose
headers do not complete within http.header_timeout is closed, one address cannot hold more than
http.max_connections_per_address, and other clients are served meanwhile."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_files
from tests.test_serve import Server

CAP = 20

pytestmark = pytest.mark.usefixtures("serving_as_production_does")


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Server]:
    write_files(
        tmp_path / "etc",
        {"wcp360.yml": f"mode: dev\nhttp:\n  header_timeout: 1s\n  max_connections_per_address: {CAP}\n"},
    )
    running = Server(tmp_path)
    yield running
    running.stop()


def slow_client(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Blocks until the server acts (the socket timeout only turns a hang into a failure)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_headers_are_cut_off_and_one_address_cannot_hold_every_connection(guarded: Server) -> None:
    held = [slow_client(guarded.port) for _ in range(CAP)]
    over = [slow_client(guarded.port) for _ in range(10)]
    try:
        # Over the cap: closed at once, before any deadline.
        assert all(closed_by_server(sock) for sock in over)
        # Another address is served while the cap is full.
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
            assert other.get(f"{guarded.url}/healthz").status_code == 200
        # The slow ones are closed by the header deadline (1 s here), not left open for a minute.
        assert all(closed_by_server(sock) for sock in held)
    finally:
        for sock in held + over:
            sock.close()
    # The address may connect again once its connections are gone, and a normal request works.
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200


def test_a_kept_alive_connection_gets_a_deadline_for_each_request(guarded: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", guarded.port), timeout=60)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        head, _, body = response.partition(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        while len(body) < length:
            body += sock.recv(4096)
        assert b"200 OK" in head
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the second request stalls
        assert closed_by_server(sock)
    finally:
        sock.close()
