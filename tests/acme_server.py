"""Pebble, Let's Encrypt's ACME test server (Debian's `pebble`), on loopback for the websites
tests, with pebble-challtestsrv as its DNS: every name resolves to 127.0.0.1, so Pebble's
HTTP-01 check reaches the agent's nginx on the port the test gave it. Nothing leaves loopback.

Pebble's own TLS uses a certificate from a CA the test makes (`ca_bundle`); the certificates it
issues chain to a root it makes at start (`issued_roots`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA (its certificate's path, key and certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path, key, certificate


def make_leaf(
    directory: Path, name: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, *, client: bool = False
) -> tuple[Path, Path]:
    """A certificate for `name` (and 127.0.0.1) signed by the CA: (certificate, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
    )
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    else:
        names = [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path


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
