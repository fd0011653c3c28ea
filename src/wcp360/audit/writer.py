"""Durable appends with group commit: callers block until their event is on disk.

`always` writes and fsyncs each event on its own, in the caller's thread when the caller waits
for it anyway (`write`): handing one event to another thread and back cost two wake-ups, ~60 us
beside a ~190 us fsync (benchmarks/bench_audit.py). `batch` hands events to one writer thread,
which takes everything that queued up while the previous fsync ran (plus whatever arrives within
`window` seconds, 0 by default: a lone caller never waits for company) and pays one fsync for all
of it, so throughput grows with concurrency while every acknowledged event is durable. The thread
also writes a checkpoint when `checkpoint_seconds` pass with unsigned events. One lock orders
every write of this process (the log file's flock orders the processes).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Literal

import structlog

from wcp360 import metrics
from wcp360.audit.logfile import AuditLogFile

_STOP = object()


class Durable:
    """One event's acknowledgement: `result()` blocks until the writer has it on disk.

    A lock made held and released once by the writer, instead of a concurrent.futures.Future
    (a Condition, an RLock and a waiter list each): with 16 callers, waking them was most of
    the CPU a batch cost (benchmarks/bench_audit.py)."""

    __slots__ = ("_done", "_error", "_record")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._record: dict[str, Any] | None = None
        self._error: BaseException | None = None

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        if not self._done.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the audit event was not written in time")
        self._done.release()  # later calls return at once
        if self._error is not None:
            raise self._error
        assert self._record is not None
        return self._record

    def set_result(self, record: dict[str, Any]) -> None:
        self._record = record
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.release()
_log = structlog.get_logger("wcp360.audit")


class AuditWriter:
    def __init__(
        self,
        logfile: AuditLogFile,
        fsync: Literal["always", "batch"] = "batch",
        window: float = 0.0,
        checkpoint_seconds: float = 300.0,
        max_batch: int = 512,
        company_wait: float = 0.0005,
    ) -> None:
        self.logfile = logfile
        self.fsync = fsync
        self.window = window
        self.checkpoint_seconds = checkpoint_seconds
        self.max_batch = max_batch
        self.company_wait = company_wait
        # How many events the last batch held: that many callers are likely to come back together.
        self._expected = 1
        self.listeners: list[threading.Condition] = []
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(self, event: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Append one event and return it as written (with seq and chain) once it is durable."""
        return self.enqueue(event, overlap=False).result(timeout)

    def enqueue(self, event: dict[str, Any], overlap: bool = True) -> Durable:
        """Queue one event; `result()` returns it as written once it is durable. Without
        `overlap` (the caller will only wait), `always` writes it here and now."""
        done = Durable()
        if self.fsync == "always" and not overlap:
            self._commit([(event, done)])
        else:
            self._queue.put((event, done))
        return done

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(30)
        with self._lock:
            self.logfile.close()

    def _run(self) -> None:
        last_checkpoint = time.monotonic()
        while True:
            timeout = max(0.0, self.checkpoint_seconds - (time.monotonic() - last_checkpoint))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if item is not None:
                batch = [item]
                if self.fsync == "batch":
                    self._gather(batch)
                self._commit(batch)
                self._expected = len(batch)
            if time.monotonic() - last_checkpoint >= self.checkpoint_seconds:
                try:
                    with self._lock:
                        self.logfile.checkpoint()
                except OSError:
                    metrics.AUDIT_WRITE_FAILURES.inc()
                    _log.exception("audit checkpoint failed")
                last_checkpoint = time.monotonic()

    def _gather(self, batch: list[Any]) -> None:
        """What else is queued; after a batch of several, wait up to `company_wait` for as many
        callers again (they were woken together and come back within microseconds of each other:
        without the wait, each fsync took the first two or three and 16 callers reached 2x a raw
        fsync loop). A lone caller's last batch was one: it never waits."""
        started = time.monotonic()
        while len(batch) < self.max_batch:
            limit = self.window if len(batch) >= self._expected else max(self.window, self.company_wait)
            remaining = started + limit - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                self._queue.put(_STOP)  # finish this batch, then stop
                return
            batch.append(item)

    def _commit(self, batch: list[Any]) -> None:
        try:
            with self._lock:
                written = self.logfile.append([event for event, _ in batch], fsync=True)
        except Exception as exc:  # the callers learn of it; nothing is acknowledged
            metrics.AUDIT_WRITE_FAILURES.inc()
            _log.exception("audit write failed", events=len(batch))
            for _, done in batch:
                done.set_exception(exc)
            return
        for (_, done), record in zip(batch, written, strict=True):
            done.set_result(record)
        for condition in self.listeners:
            with condition:
                condition.notify_all()
