"""The messages between a worker and its pool, typed, and how they cross the pipe.

A worker runs tenant code: should a module ever escape wasmtime, the worker is the attacker's.
multiprocessing's `send`/`recv` pickle, and unpickling can run code, so the pool never unpickles
what a worker sends: a worker's message is one frame, a JSON header of known fields followed by
its byte fields raw (their lengths in the header), decoded into exactly one of the types below,
every field checked, the frame size-capped; anything else is a `PipeError` and the worker is
replaced. One frame per message: a run's answer costs one write and one read, as a pickle did. Messages the other
way (jobs, answers to outbound requests) come from the trusted pool and stay pickled.

The header is JSON written and read by orjson: with `dataclasses.asdict` and the standard
library's json, a trivial run's answer cost the worker 16% of its time (issue 18).
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, fields
from multiprocessing.connection import Connection
from typing import Any, get_args

import orjson

from wcp360.workloads.engine.confine import Confinement
from wcp360.workloads.engine.outcomes import Outcome, RunResult

HEADER_LIMIT = 1024 * 1024  # a header holds a message, a denied-call list, a URL: far less
_LENGTH = struct.Struct("!I")  # the header's length, before it
_OUTCOMES = frozenset(get_args(Outcome))


class PipeError(Exception):
    """A worker sent something that is not one of its messages."""


# -- worker -> pool ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The worker confined itself and waits for jobs."""

    confinement: Confinement


@dataclass(frozen=True)
class Loading:
    """Compiling a module or reading its artifact: not the run's time (max_compile_time)."""


@dataclass(frozen=True)
class Loaded:
    """Loading is over; the run's own fence is back."""


@dataclass(frozen=True)
class HttpRequest:
    """The module asked for a URL (wcp360.http_get): the pool checks it and fetches."""

    url: str


FromWorker = Ready | Loading | Loaded | HttpRequest | RunResult
_BLOBS = ("stdout", "stderr", "state")
_RESULT_FIELDS = tuple(f.name for f in fields(RunResult) if f.name not in _BLOBS)


# -- pool -> worker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    status: int  # -1: the request failed
    body: bytes = b""


@dataclass(frozen=True)
class HttpDenied:
    reason: str


# -- the worker's side ------------------------------------------------------------------------


def send_to_pool(conn: Connection, message: FromWorker) -> None:
    blobs: list[bytes] = []
    if isinstance(message, RunResult):
        values = {name: getattr(message, name) for name in _RESULT_FIELDS}
        sizes = []
        for name in _BLOBS:
            blob = getattr(message, name)
            if blob is not None:
                blobs.append(blob)
                sizes.append([name, len(blob)])
        header = {"type": "result", "fields": values, "blobs": sizes}
    elif isinstance(message, Ready):
        header = {"type": "ready", "fields": asdict(message.confinement)}
    elif isinstance(message, HttpRequest):
        header = {"type": "http", "fields": {"url": message.url}}
    else:
        header = {"type": "loading" if isinstance(message, Loading) else "loaded", "fields": {}}
    encoded = orjson.dumps(header)
    conn.send_bytes(b"".join([_LENGTH.pack(len(encoded)), encoded, *blobs]))


# -- the pool's side --------------------------------------------------------------------------


def receive_from_worker(conn: Connection, blob_limit: int) -> FromWorker:
    """The worker's next message, decoded strictly; PipeError for anything else. Raises EOFError
    and OSError as the connection does (a worker that died)."""
    try:
        frame = conn.recv_bytes(_LENGTH.size + HEADER_LIMIT + blob_limit)
    except OSError as exc:
        if "bad message length" in str(exc):  # over the limit: the connection is unusable after it
            raise PipeError(f"a message over {HEADER_LIMIT + blob_limit} bytes") from exc
        raise
    view = memoryview(frame)
    if len(frame) < _LENGTH.size:
        raise PipeError("a message shorter than its length prefix")
    (header_length,) = _LENGTH.unpack_from(view)
    if header_length > HEADER_LIMIT or _LENGTH.size + header_length > len(frame):
        raise PipeError("a header longer than its message")
    try:
        header = orjson.loads(view[_LENGTH.size : _LENGTH.size + header_length])
    except orjson.JSONDecodeError as exc:
        raise PipeError(f"unreadable header: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("fields"), dict):
        raise PipeError("a header must be an object with fields")
    kind, values, rest = header.get("type"), header["fields"], view[_LENGTH.size + header_length :]
    if kind == "result":
        return _result(values, header.get("blobs"), rest)
    if len(rest):
        raise PipeError("bytes after a message that carries none")
    if kind == "loading":
        return Loading()
    if kind == "loaded":
        return Loaded()
    if kind == "http":
        return HttpRequest(_typed(values, "url", str))
    if kind == "ready":
        return Ready(_confinement(values))
    raise PipeError(f"unknown message type {str(kind)[:40]!r}")


_KNOWN = frozenset(_RESULT_FIELDS)


def _result(values: dict[str, Any], blobs: object, rest: memoryview) -> RunResult:
    if not isinstance(blobs, list) or not all(
        isinstance(b, list) and len(b) == 2 and b[0] in _BLOBS and isinstance(b[1], int) and b[1] >= 0 for b in blobs
    ):
        raise PipeError("bad blob list")
    names = [b[0] for b in blobs]
    if len(set(names)) != len(names) or sum(b[1] for b in blobs) != len(rest):
        raise PipeError("blob lengths do not add up to the message")
    outcome: Outcome = _typed(values, "outcome", str)
    if outcome not in _OUTCOMES:
        raise PipeError(f"unknown outcome {outcome[:40]!r}")
    denied = values.get("denied", [])
    if not isinstance(denied, list) or not all(isinstance(d, str) for d in denied):
        raise PipeError("denied must be a list of strings")
    if not set(values) <= _KNOWN:
        raise PipeError(f"unknown fields {sorted(set(values) - _KNOWN)[:5]}")
    result = RunResult(
        outcome,  # checked against Outcome above
        exit_code=_optional(values, "exit_code", int),
        duration_ms=float(_typed(values, "duration_ms", (int, float))),
        fuel_used=_typed(values, "fuel_used", int),
        memory_peak_bytes=_typed(values, "memory_peak_bytes", int),
        message=_optional(values, "message", str),
        denied=denied,
    )
    at = 0
    for name, length in blobs:
        setattr(result, name, bytes(rest[at : at + length]))
        at += length
    return result


def _confinement(values: dict[str, Any]) -> Confinement:
    notes = values.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise PipeError("notes must be a list of strings")
    return Confinement(
        no_new_privs=_typed(values, "no_new_privs", bool),
        landlock_abi=_typed(values, "landlock_abi", int),
        landlock=_typed(values, "landlock", bool),
        seccomp=_typed(values, "seccomp", bool),
        notes=notes,
    )


def _typed(values: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = values.get(name)
    # bool is an int in Python: an integer field must not accept true/false, nor the reverse.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        raise PipeError(f"{name} must be {kind}")
    return value


def _optional(values: dict[str, Any], name: str, kind: type) -> Any:
    return None if values.get(name) is None else _typed(values, name, kind)
