"""A malware scan by ClamAV's clamd over its Unix socket (the INSTREAM command).

Hand-written because the Python clients on PyPI (`clamd`, `pyclamd`) have not been released
since 2017-2019; the protocol is four commands' worth of framing, documented in clamd(8):
`zINSTREAM\\0`, then chunks each prefixed by their length (4 bytes, big-endian), then a zero
length; the answer is `stream: OK` or `stream: <signature> FOUND`, NUL-terminated.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from pathlib import Path

_LENGTH = struct.Struct(">I")
TIMEOUT = 120.0  # seconds for clamd to answer about one stream


class ScannerDown(Exception):
    """clamd did not answer (or answered nonsense): uploads are refused, not let through."""


def _talk(path: Path, command: bytes, chunks: Iterable[bytes] = ()) -> str:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT)
            conn.connect(str(path))
            conn.sendall(command)
            for chunk in chunks:
                if chunk:
                    conn.sendall(_LENGTH.pack(len(chunk)) + chunk)
            if command == b"zINSTREAM\0":
                conn.sendall(_LENGTH.pack(0))
            answer = b""
            while not answer.endswith(b"\0"):
                received = conn.recv(4096)
                if not received:
                    break
                answer += received
    except OSError as exc:
        raise ScannerDown(f"clamd at {path} did not answer: {exc.strerror or exc}") from None
    return answer.rstrip(b"\0").decode("utf-8", "replace").strip()


def ping(path: Path) -> bool:
    try:
        return _talk(path, b"zPING\0") == "PONG"
    except ScannerDown:
        return False


def scan(path: Path, chunks: Iterable[bytes]) -> str | None:
    """The signature clamd found in the stream, or None when it found nothing."""
    answer = _talk(path, b"zINSTREAM\0", chunks)
    if answer.endswith(" FOUND"):
        return answer.removeprefix("stream: ").removesuffix(" FOUND")
    if answer == "stream: OK":
        return None
    raise ScannerDown(f"clamd answered {answer[:200]!r}")
