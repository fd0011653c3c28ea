"""Module uploads on their way in: streamed to a private file, never held whole in memory, and
bounded per account.

A 95 MB upload used to cost about 175 MB of API memory (the body, its chunks joined, and wasmtime's
copy for validation), and four at once stored 362 MiB in 2.3 s. Now the body goes to a file as it
arrives (413 as soon as it passes max_module_size), at most `quotas.max_concurrent_uploads_per_user`
per account are in progress (429), and the file is mapped, not read, for validation and analysis.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import shutil
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wcp360.errors import TooManyRequests, WcpError
from wcp360.keys import ensure_private_dir

if TYPE_CHECKING:
    import wasmtime

_CHUNK = 1024 * 1024


class TooLarge(WcpError):
    status = 413
    code = "payload-too-large"
    title = "Module too large"


class Incoming:
    def __init__(self, directory: Path, limit: int, per_user: int) -> None:
        self.directory = directory
        self.limit = limit
        self.per_user = per_user
        self._lock = threading.Lock()
        self._in_progress: Counter[str] = Counter()

    @contextlib.contextmanager
    def slot(self, account: str) -> Iterator[None]:
        """One of the account's upload slots for the duration of the upload, or 429."""
        with self._lock:
            if self._in_progress[account] >= self.per_user:
                raise TooManyRequests(
                    f"{self.per_user} uploads of this account are already in progress "
                    "(sandbox.yml quotas.max_concurrent_uploads_per_user)",
                    headers={"Retry-After": "1"},
                )
            self._in_progress[account] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_progress[account] -= 1
                if self._in_progress[account] <= 0:
                    del self._in_progress[account]

    @contextlib.contextmanager
    def new_file(self) -> Iterator[tuple[Path, Callable[[bytes], None]]]:
        """A new private file and a `write` that refuses past the limit; removed on any error."""
        ensure_private_dir(self.directory)
        path = self.directory / f"upload-{secrets.token_hex(12)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        written = 0

        def write(chunk: bytes) -> None:
            nonlocal written
            written += len(chunk)
            if written > self.limit:
                raise TooLarge(f"module is over {self.limit} bytes (sandbox.yml max_module_size)")
            handle.write(chunk)

        try:
            with os.fdopen(fd, "wb") as handle:
                yield path, write
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    async def receive(self, chunks: AsyncIterator[bytes]) -> Path:
        """Write a request body to a new private file as it arrives; TooLarge past the limit."""
        with self.new_file() as (path, write):
            async for chunk in chunks:
                write(chunk)
        return path

    def copy(self, source: BinaryIO) -> Path:
        """A multipart form's file (spooled by the form parser) into a new private file."""
        with self.new_file() as (path, write):
            while chunk := source.read(_CHUNK):
                write(chunk)
        return path


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    """The file's bytes as a private copy-on-write mapping: pages come from the page cache, and
    nothing writes to them, so no module-sized allocation is made."""
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            yield b""
            return
        view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            yield view
        finally:
            with contextlib.suppress(BufferError):  # a view still exported: the GC closes it
                view.close()


def validate(engine: wasmtime.Engine, raw: bytes | bytearray | mmap.mmap) -> None:
    """`wasmtime.Module.validate`, without its copy of the bytes into a new ctypes buffer (its own
    TODO says the copy is there for want of a better way): over a writable buffer (a copy-on-write
    mapping or a bytearray) the same C call reads the bytes where they are. Falls back to the
    public call for read-only bytes."""
    import wasmtime

    if isinstance(raw, bytes):
        wasmtime.Module.validate(engine, raw)
        return
    from wasmtime import _ffi as ffi  # pinned in uv.lock (wasmtime 50): this C entry point is stable

    buffer = (ctypes.c_uint8 * len(raw)).from_buffer(raw)
    try:
        error = ffi.wasmtime_module_validate(engine.ptr(), buffer, len(raw))
    finally:
        del buffer
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def move_into(source: Path, target: Path) -> None:
    """Put an uploaded file into the store under its digest (same filesystem: a rename)."""
    ensure_private_dir(target.parent)
    try:
        os.link(source, target)
    except FileExistsError:
        return  # content-addressed: the same bytes are already stored
    except OSError:
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)
