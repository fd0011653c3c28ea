"""A real audit log in a temporary directory, written through the production writer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wcp360.audit.logfile import AuditLogFile, all_files
from wcp360.audit.signing import SigningKeys
from wcp360.audit.verify import Report, verify
from wcp360.audit.writer import _STOP, AuditWriter


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "ts": f"2026-01-01T00:00:{i % 60:02d}.000000Z",
        "action": "login_failure" if i % 3 else "user_create",
        "outcome": "failure" if i % 3 else "success",
        "actor_id": f"user-{i % 5}",
        "resource_type": "user",
        "resource_id": str(i),
        "ip_address": "127.0.0.1",
        "user_agent": "pytest",
        "request_id": None,
        "channel": "test",
        "details": {"n": i, "name": f"événement {i}"},
        **extra,
    }


@dataclass
class LogUnderTest:
    directory: Path
    keys: SigningKeys
    make: Callable[..., AuditLogFile]

    def write(self, count: int, start: int = 0, **options: Any) -> AuditLogFile:
        log = self.make(**options)
        for i in range(start, start + count):
            log.append([event(i)], fsync=False)
        return log

    def verify(self, **kwargs: Any) -> Report:
        return verify(self.directory, self.keys.public_keys(), **kwargs)

    @property
    def current(self) -> Path:
        return self.directory / "audit.log"

    def files(self) -> list[Path]:
        return all_files(self.directory)


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[LogUnderTest]:
    keys = SigningKeys(tmp_path / "keys")
    opened: list[AuditLogFile] = []

    def make(max_size: int = 10**9, max_files: int = 100, compress: bool = True, every: int = 10) -> AuditLogFile:
        log = AuditLogFile(tmp_path / "log", keys, max_size, max_files, compress, every)
        opened.append(log)
        return log

    yield LogUnderTest(tmp_path / "log", keys, make)
    for log in opened:
        with contextlib.suppress(OSError):
            log.close()


@pytest.fixture
def writer_factory() -> Iterator[Callable[..., AuditWriter]]:
    writers: list[AuditWriter] = []

    def build(log: AuditLogFile, **options: Any) -> AuditWriter:
        writer = AuditWriter(log, **options)
        writers.append(writer)
        return writer

    yield build
    for writer in writers:
        writer._queue.put(_STOP)  # stop the thread; the audit_log fixture closes the files
