"""Copies of the trail (syslog, database) fed from the file, which is the source of truth.

Each forwarder follows the log from a cursor saved on disk. When its destination is down it
counts the failure, logs it, backs off and retries the same events: nothing is skipped, and after
a restart it continues where the cursor says. Deliveries must be idempotent (a crash between a
delivery and the cursor update repeats the last batch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from wcp360 import metrics
from wcp360.audit.tail import LogTail
from wcp360.keys import write_private

Deliver = Callable[[list[dict[str, Any]]], None]
_log = structlog.get_logger("wcp360.audit")


class Forwarder:
    def __init__(
        self,
        name: str,
        directory: Path,
        filename: str,
        deliver: Deliver,
        cursor_path: Path,
        wake: threading.Condition,
        max_backoff: float = 30.0,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.cursor_path = cursor_path
        self.wake = wake
        self.max_backoff = max_backoff
        self.failures = 0
        self.tail = LogTail(directory, filename, after_seq=self._load_cursor())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"audit-forward-{name}", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.wake:
            self.wake.notify_all()
        self._thread.join(10)

    @property
    def delivered_seq(self) -> int:
        return self._load_cursor()

    def _run(self) -> None:
        backoff = 0.5
        pending: list[dict[str, Any]] = []
        while not self._stop.is_set():
            try:
                if not pending:
                    pending = self.tail.read()
                if not pending:
                    with self.wake:
                        self.wake.wait(timeout=1.0)
                    continue
                self.deliver(pending)
            except Exception as exc:
                self.failures += 1
                metrics.AUDIT_FORWARD_FAILURES.labels(destination=self.name).inc()
                _log.warning(
                    "audit forwarding failed; will retry",
                    destination=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                    pending=len(pending),
                    retry_in=backoff,
                )
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            self._save_cursor(int(pending[-1]["seq"]))
            pending = []
            backoff = 0.5

    def _load_cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _save_cursor(self, seq: int) -> None:
        write_private(self.cursor_path, f"{seq}\n".encode())


def _short(exc: BaseException) -> str:
    # Driver errors embed the statement and its parameters: keep the first line, bounded.
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first[:200]}"
