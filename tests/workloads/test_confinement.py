"""A confined worker process, attacked from the inside: what tenant code that escaped wasmtime
would try next (sockets, exec, fork, writing or reading outside its paths) fails; what the runtime
needs (threads, memory, its scratch directory, running wasm) still works."""

from __future__ import annotations

import errno
import multiprocessing
import os
import socket
import threading
from pathlib import Path
from typing import Any

from wcp360.workloads.engine.confine import confine, landlock_abi


def _attempt(action: Any) -> str:
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _inside(conn: Any, read_only: str, scratch: str, secret: str) -> None:
    import sys

    paths = [Path(p) for p in sys.path if p] + [Path(sys.prefix), Path(sys.base_prefix), Path("/usr"), Path("/lib")]
    state = confine([*paths, Path(read_only)], [Path(scratch)])
    results: dict[str, Any] = {"seccomp": state.seccomp, "landlock": state.landlock}
    results["socket"] = _attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    results["fork"] = _attempt(os.fork)
    results["exec"] = _attempt(lambda: os.execv("/bin/true", ["/bin/true"]))  # noqa: S606 (the attack)
    results["write_outside"] = _attempt(lambda: Path(read_only, "planted").write_text("x"))
    results["read_secret"] = _attempt(lambda: Path(secret).read_text())
    results["write_scratch"] = _attempt(lambda: Path(scratch, "ok").write_text("x"))
    results["read_allowed"] = _attempt(lambda: Path(read_only, "data").read_text())
    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(sum(range(1000))))
    thread.start()
    thread.join()
    results["thread"] = box == [499500]
    import wasmtime

    engine = wasmtime.Engine()
    instance = wasmtime.Instance(
        wasmtime.Store(engine), wasmtime.Module(engine, '(module (func (export "f") (result i32) i32.const 7))'), []
    )
    results["wasm_instantiated"] = instance is not None
    conn.send(results)


def test_confined_worker_refuses_escape_routes(tmp_path: Path) -> None:
    read_only, scratch, secret_dir = tmp_path / "ro", tmp_path / "scratch", tmp_path / "secret"
    for directory in (read_only, scratch, secret_dir):
        directory.mkdir()
    (read_only / "data").write_text("fine")
    (secret_dir / "key").write_text("do not read")
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_inside, args=(child, str(read_only), str(scratch), str(secret_dir / "key"))
    )
    process.start()
    assert parent.poll(60), "the confined process did not answer"
    results = parent.recv()
    process.join(10)
    assert results["seccomp"], results
    assert results["socket"] == "EPERM" and results["exec"] == "EPERM", results
    assert results["fork"] in ("EPERM", "ENOSYS"), results
    assert results["write_scratch"] == "allowed" and results["read_allowed"] == "allowed", results
    assert results["thread"] and results["wasm_instantiated"], results
    if landlock_abi():
        assert results["landlock"], results
        assert results["write_outside"] == "EACCES" and results["read_secret"] == "EACCES", results
    assert not (read_only / "planted").exists()
