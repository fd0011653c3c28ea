"""A FastCGI client for the tests and the benchmark: what nginx does to a php-fpm socket, in one
function. Hand-written (about forty lines of the FastCGI 1.0 record format) because PyPI's
FastCGI packages are servers, and a subprocess per request (cgi-fcgi) would measure its own start."""

from __future__ import annotations

import socket
import struct

_HEADER = struct.Struct(">BBHHBx")
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
RESPONDER = 1


def _record(kind: int, body: bytes, request_id: int = 1) -> bytes:
    padding = -len(body) % 8
    return _HEADER.pack(1, kind, request_id, len(body), padding) + body + b"\0" * padding


def _pair(name: bytes, value: bytes) -> bytes:
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)

    return length(len(name)) + length(len(value)) + name + value


def request(socket_path: str, script: str, query: str = "", timeout: float = 60) -> tuple[bytes, bytes]:
    """GET `script` (an absolute path the pool can read); (stdout, stderr) of the response."""
    params = {
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": "/" + script.rsplit("/", 1)[-1],
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "localhost",
    }
    encoded = b"".join(_pair(k.encode(), v.encode()) for k, v in params.items())
    message = (
        _record(BEGIN_REQUEST, struct.pack(">HB5x", RESPONDER, 0))
        + _record(PARAMS, encoded)
        + _record(PARAMS, b"")
        + _record(STDIN, b"")
    )
    out, err = bytearray(), bytearray()
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(timeout)
        connection.connect(socket_path)
        connection.sendall(message)
        stream = connection.makefile("rb")
        while True:
            header = stream.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise ConnectionError("php-fpm closed the connection mid-response")
            _, kind, _, length, padding = _HEADER.unpack(header)
            body = stream.read(length + padding)[:length]
            if kind == STDOUT:
                out += body
            elif kind == STDERR:
                err += body
            elif kind == END_REQUEST:
                return bytes(out), bytes(err)
