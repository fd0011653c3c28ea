"""Alerts reach a real local SMTP server over STARTTLS and a local webhook receiver; repeats are
de-duplicated; a destination that stays down is retried, then counted and logged."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wcp360 import metrics
from wcp360.config.ids import EmailAlert, SlackAlert
from wcp360.defense.alerts import Alerter, email_sender, webhook_sender

DETAIL = {
    "rule": "privilege_escalation",
    "action": "alert",
    "condition": "c",
    "event": {"seq": 7, "action": "permission_denied", "ip_address": "198.51.100.1"},
}


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Inbox, int]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    yield inbox, port
    controller.stop()


def test_email_over_starttls(smtp: tuple[Inbox, int], certificate: tuple[Path, Path]) -> None:
    inbox, port = smtp
    settings = EmailAlert(
        type="email",
        recipients=["security@example.test"],
        smtp_host="localhost",
        smtp_port=port,
        ca_file=certificate[0],
        sender="wcp360@example.test",
    )
    alerter = Alerter([("email", email_sender(settings))], dedupe_seconds=60)
    try:
        alerter("privilege_escalation", "u-1", DETAIL)
        alerter("privilege_escalation", "u-1", DETAIL)  # a repeat within the window: sent once
        alerter("privilege_escalation", "u-2", DETAIL)
        wait_for(lambda: len(inbox.messages) == 2)
    finally:
        alerter.close()
    sender, recipients, content = inbox.messages[0]
    assert sender == "wcp360@example.test" and recipients == ["security@example.test"]
    assert b"Subject: [WCP360] privilege_escalation: u-1" in content and b"permission_denied" in content


def test_email_refuses_an_untrusted_certificate(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = EmailAlert(type="email", recipients=["s@example.test"], smtp_host="localhost", smtp_port=port)
    with pytest.raises(ssl.SSLCertVerificationError):
        email_sender(settings)("t", {"text": "x"})
    assert inbox.messages == []


def test_webhook() -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = SlackAlert(type="slack", webhook=f"http://127.0.0.1:{server.server_port}/hook")
        alerter = Alerter([("slack", webhook_sender(settings))], dedupe_seconds=60)
        alerter("brute_force_login", "198.51.100.7", DETAIL)
        wait_for(lambda: len(received) == 1)
        alerter.close()
    finally:
        server.shutdown()
    assert received[0]["text"].startswith("*[WCP360] brute_force_login: 198.51.100.7*")


def test_webhooks_must_be_https_off_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        webhook_sender(SlackAlert(type="slack", webhook="http://hooks.example.test/x"))


def test_failed_alert_is_retried_then_counted() -> None:
    attempts: list[int] = []

    def broken(title: str, detail: dict[str, Any]) -> None:
        attempts.append(1)
        raise ConnectionRefusedError("down")

    before = metrics.ALERT_FAILURES.labels(destination="broken")._value.get()
    alerter = Alerter([("broken", broken)], dedupe_seconds=0, attempts=3, first_backoff=0.01)
    alerter("r", "s", DETAIL)
    wait_for(lambda: metrics.ALERT_FAILURES.labels(destination="broken")._value.get() == before + 1)
    alerter.close()
    assert len(attempts) == 3


def test_a_destination_that_recovers_gets_the_alert() -> None:
    calls: list[str] = []

    def flaky(title: str, detail: dict[str, Any]) -> None:
        calls.append(title)
        if len(calls) < 3:
            raise TimeoutError("slow")

    alerter = Alerter([("flaky", flaky)], dedupe_seconds=0, attempts=4, first_backoff=0.01)
    alerter("r", "s", DETAIL)
    wait_for(lambda: len(calls) == 3)
    alerter.close()
    assert metrics.ALERTS_SENT.labels(destination="flaky")._value.get() >= 1
