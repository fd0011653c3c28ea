"""Syslog and database copies: RFC 5424 on the wire, outages retried with nothing lost."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.audit.conftest import LogUnderTest, event
from wcp360 import metrics
from wcp360.audit.db_sink import DatabaseSink
from wcp360.audit.forwarder import Forwarder
from wcp360.audit.syslog import SyslogTransport
from wcp360.runtime import Runtime
from wcp360.store.models import AuditLog
from wcp360.store.scope import SYSTEM

RFC5424 = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (\{.*\})$")


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


class UdpReceiver:
    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(65535))
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def forwarders() -> Iterator[list[Forwarder]]:
    started: list[Forwarder] = []
    yield started
    for forwarder in started:
        forwarder.stop()


def start(forwarders: list[Forwarder], audit_log: LogUnderTest, name: str, deliver: Any) -> Forwarder:
    forwarder = Forwarder(
        name,
        audit_log.directory,
        "audit.log",
        deliver,
        audit_log.directory.parent / f"cursor-{name}",
        threading.Condition(),
        max_backoff=0.2,
    )
    forwarders.append(forwarder.start())
    return forwarder


def test_syslog_messages_are_rfc5424(audit_log: LogUnderTest, forwarders: list[Forwarder]) -> None:
    receiver = UdpReceiver()
    try:
        audit_log.write(3).close()
        start(
            forwarders,
            audit_log,
            "syslog",
            SyslogTransport(f"udp://127.0.0.1:{receiver.port}", "local0", "wcp360").deliver,
        )
        wait_for(lambda: len(receiver.messages) == 3)
        match = RFC5424.match(receiver.messages[1])
        assert match is not None, receiver.messages[1]
        priority, _, _, tag, _, msgid, body = match.groups()
        assert int(priority) == 16 * 8 + 4  # local0, warning (a failure)
        assert tag == b"wcp360" and msgid == b"login_failure"
        assert b'"seq":2' in body
    finally:
        receiver.close()


def test_syslog_over_a_unix_socket(audit_log: LogUnderTest, forwarders: list[Forwarder], tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    try:
        audit_log.write(1).close()
        start(forwarders, audit_log, "syslog", SyslogTransport(f"unix:{path}", "auth", "wcp360").deliver)
        message = server.recv(65535)
        assert message.startswith(f"<{4 * 8 + 6}>1 ".encode())  # auth, informational (success)
    finally:
        server.close()


def test_syslog_outage_loses_nothing(audit_log: LogUnderTest, forwarders: list[Forwarder]) -> None:
    # A unix socket that does not exist yet: every delivery fails until it appears.
    path = audit_log.directory.parent / "late.sock"
    before = metrics.AUDIT_FORWARD_FAILURES.labels(destination="syslog")._value.get()
    log = audit_log.write(4)
    forwarder = start(forwarders, audit_log, "syslog", SyslogTransport(f"unix:{path}", "local0", "wcp360").deliver)
    wait_for(lambda: forwarder.failures >= 2)
    for i in range(4, 10):
        log.append([event(i)], fsync=True)  # more events while the destination is down
    assert metrics.AUDIT_FORWARD_FAILURES.labels(destination="syslog")._value.get() > before
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    try:
        received = [server.recv(65535) for _ in range(10)]
    finally:
        server.close()
        log.close()
    seqs = [int(re.search(rb'"seq":(\d+)', m).group(1)) for m in received]  # type: ignore[union-attr]
    assert seqs == list(range(1, 11))
    wait_for(lambda: forwarder.delivered_seq == 10)


def test_cursor_survives_restart(audit_log: LogUnderTest, forwarders: list[Forwarder]) -> None:
    delivered: list[int] = []
    log = audit_log.write(5)
    first = start(forwarders, audit_log, "db", lambda batch: delivered.extend(int(r["seq"]) for r in batch))
    wait_for(lambda: first.delivered_seq == 5)
    first.stop()
    forwarders.remove(first)
    for i in range(5, 8):
        log.append([event(i)], fsync=True)
    log.close()
    start(forwarders, audit_log, "db", lambda batch: delivered.extend(int(r["seq"]) for r in batch))
    wait_for(lambda: len(delivered) == 8)
    assert delivered == list(range(1, 9))


def test_database_copy(audit_log: LogUnderTest, forwarders: list[Forwarder], rt: Runtime) -> None:
    audit_log.write(12, max_size=1500).close()  # across several rotated files
    sink = DatabaseSink(rt.db)
    forwarder = start(forwarders, audit_log, "database", sink.deliver)
    wait_for(lambda: forwarder.delivered_seq == 12)
    sink.deliver(list(__import__("wcp360.audit.tail", fromlist=["iter_events"]).iter_events(audit_log.directory))[:3])
    with rt.db.transaction(SYSTEM) as s:
        rows = s.scalars(select(AuditLog).order_by(AuditLog.seq)).all()
        assert [r.seq for r in rows] == list(range(1, 13))  # the repeated batch inserted nothing twice
        assert rows[0].action == "user_create" and rows[0].chain_hash and '"seq":1' in (rows[0].body or "")
