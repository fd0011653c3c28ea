"""RFC 5424 syslog delivery to the local socket or a configured host (seed 003 audit `syslog`).

Hand-written because the standard library's SysLogHandler speaks the older BSD format (RFC 3164)
and cannot frame TCP messages by octet counting (RFC 6587).
"""

from __future__ import annotations

import json
import os
import socket
from logging.handlers import SysLogHandler
from typing import Any

SEVERITY = {"success": 6, "failure": 4, "denied": 4, "alert": 1, "replay_detected": 2}


def facility_code(name: str) -> int:
    try:
        return SysLogHandler.facility_names[name]
    except KeyError:
        raise ValueError(f"unknown syslog facility {name!r}") from None


def format_5424(record: dict[str, Any], facility: int, tag: str, hostname: str) -> bytes:
    severity = SEVERITY.get(str(record.get("outcome")), 5)
    message = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    msgid = str(record.get("action", "-"))[:32] or "-"
    header = f"<{facility * 8 + severity}>1 {record.get('ts', '-')} {hostname} {tag[:48]} {os.getpid()} {msgid} -"
    return f"{header} {message}".encode()


class SyslogTransport:
    def __init__(self, address: str, facility: str, tag: str) -> None:
        self.address = address
        self.facility = facility_code(facility)
        self.tag = tag
        self.hostname = socket.gethostname() or "-"
        self._sock: socket.socket | None = None

    def deliver(self, records: list[dict[str, Any]]) -> None:
        try:
            for record in records:
                self._send(format_5424(record, self.facility, self.tag, self.hostname))
        except OSError:
            self.close()
            raise

    def _send(self, payload: bytes) -> None:
        scheme, _, rest = self.address.partition(":")
        if scheme == "unix":
            sock = self._socket(socket.AF_UNIX, socket.SOCK_DGRAM, rest)
            sock.send(payload)
        elif scheme == "udp":
            host, port = _host_port(rest)
            sock = self._socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM, (host, port))
            sock.send(payload)
        elif scheme == "tcp":
            host, port = _host_port(rest)
            sock = self._socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, (host, port))
            sock.sendall(f"{len(payload)} ".encode() + payload)  # RFC 6587 octet counting
        else:
            raise ValueError(f"unsupported syslog address {self.address!r}")

    def _socket(self, family: int, kind: int, target: Any) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(family, kind)
            sock.settimeout(5)
            sock.connect(target)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _host_port(rest: str) -> tuple[str, int]:
    host, _, port = rest.lstrip("/").rpartition(":")
    return host.strip("[]"), int(port)
