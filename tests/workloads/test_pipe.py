"""What a worker sends is never unpickled: a worker runs tenant code, and unpickling runs code.
Every message is decoded strictly into its type; a pickle, unknown fields, wrong types and
oversized frames are refused (the pool then replaces the worker). Round trips are exact."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
from multiprocessing import Pipe
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wcp360.workloads.engine.confine import Confinement
from wcp360.workloads.engine.outcomes import RunResult
from wcp360.workloads.engine.pipe import (
    HttpRequest,
    Loaded,
    Loading,
    PipeError,
    Ready,
    receive_from_worker,
    send_to_pool,
)


class Boom:
    """Unpickling this would create a file: the proof that nothing was unpickled is its absence."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, int]]:
        return (os.open, (self.path, os.O_CREAT | os.O_WRONLY))


def test_a_pickle_from_a_worker_is_refused_not_run(tmp_path: Path) -> None:
    pool, worker = Pipe()
    marker = tmp_path / "pwned"
    worker.send(Boom(str(marker)))  # what a compromised worker could send through plain send()
    with pytest.raises(PipeError):
        receive_from_worker(pool, 1024)
    assert not marker.exists()


@pytest.mark.parametrize(
    "header",
    [
        {"type": "result", "fields": {"outcome": "ok", "duration_ms": 1, "fuel_used": 1, "memory_peak_bytes": 0,
                                      "evil": 1}, "blobs": []},
        {"type": "result", "fields": {"outcome": "pwned", "duration_ms": 1, "fuel_used": 1, "memory_peak_bytes": 0},
         "blobs": []},
        {"type": "result", "fields": {"outcome": "ok", "duration_ms": 1, "fuel_used": True, "memory_peak_bytes": 0},
         "blobs": []},
        {"type": "result", "fields": {"outcome": "ok", "duration_ms": 1, "fuel_used": 1, "memory_peak_bytes": 0},
         "blobs": [["stdout", 0], ["stdout", 0]]},
        {"type": "result", "fields": {"outcome": "ok", "duration_ms": 1, "fuel_used": 1, "memory_peak_bytes": 0},
         "blobs": [["__class__", 0]]},
        {"type": "ready", "fields": {"no_new_privs": "yes", "landlock_abi": 3, "landlock": True, "seccomp": True}},
        {"type": "http", "fields": {"url": ["http://a"]}},
        {"type": "__import__", "fields": {}},
        ["not", "an", "object"],
    ],
)  # fmt: skip
def test_malformed_headers_are_refused(header: object) -> None:
    pool, worker = Pipe()
    encoded = json.dumps(header).encode()
    worker.send_bytes(struct.pack("!I", len(encoded)) + encoded)
    with pytest.raises(PipeError):
        receive_from_worker(pool, 1024)


@pytest.mark.parametrize(
    "frame",
    [b"", b"\0\0", struct.pack("!I", 10**9) + b"{}", struct.pack("!I", 50) + b"{}", struct.pack("!I", 2) + b"{}junk"],
)
def test_malformed_frames_are_refused(frame: bytes) -> None:
    pool, worker = Pipe()
    worker.send_bytes(frame)
    with pytest.raises(PipeError):
        receive_from_worker(pool, 1024)


def test_an_oversized_frame_is_refused() -> None:
    pool, worker = Pipe()
    big = RunResult("ok", stdout=b"x" * (2 * 1024 * 1024))  # over the header's room too

    def send() -> None:
        with contextlib.suppress(OSError):  # the pool hangs up on it
            send_to_pool(worker, big)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    with pytest.raises(PipeError):
        receive_from_worker(pool, 4096)
    pool.close()
    sender.join()


@given(
    outcome=st.sampled_from(["ok", "exit", "trap", "timeout", "capability_denied"]),
    exit_code=st.one_of(st.none(), st.integers(-(2**31), 2**31)),
    stdout=st.binary(max_size=300),
    state=st.one_of(st.none(), st.binary(max_size=300)),
    message=st.one_of(st.none(), st.text(max_size=50)),
    denied=st.lists(st.text(max_size=20), max_size=3),
    duration=st.floats(0, 1e6),
)
def test_results_round_trip(
    outcome: str, exit_code: int | None, stdout: bytes, state: bytes | None, message: str | None,
    denied: list[str], duration: float,
) -> None:  # fmt: skip
    pool, worker = Pipe()
    sent = RunResult(outcome, exit_code, stdout, b"err", duration, 7, 65536, message, state, denied)  # type: ignore[arg-type]
    send_to_pool(worker, sent)
    assert receive_from_worker(pool, 1024) == sent


def test_the_other_messages_round_trip() -> None:
    pool, worker = Pipe()
    for message in (Ready(Confinement(True, 3, True, True, ["note"])), Loading(), Loaded(), HttpRequest("http://x/")):
        send_to_pool(worker, message)
        assert receive_from_worker(pool, 0) == message
