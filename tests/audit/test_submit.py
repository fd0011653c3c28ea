"""`audit.submit(...).wait()`: record() in two halves, for hot paths that overlap the trail's fsync."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.audit.conftest import LogUnderTest
from wcp360 import audit, metrics
from wcp360.audit.events import AuditEvent
from wcp360.audit.writer import AuditWriter


class Capture:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def write(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture
def installed(audit_log: LogUnderTest, writer_factory: Callable[..., AuditWriter]) -> Iterator[tuple[Capture, Path]]:
    sink = Capture()
    before = audit.current_trail()
    audit.install([sink], writer=writer_factory(audit_log.make()))
    try:
        yield sink, audit_log.current
    finally:
        audit.install(before.sinks, before.sensitive, before.writer, before.forwarders)


def _on_disk(path: Path) -> list[dict[str, Any]]:
    return [r for r in (json.loads(line) for line in path.read_text().splitlines()) if not r.get("checkpoint")]


def test_the_event_is_on_disk_before_wait_returns_and_sinks_see_it_once(installed: tuple[Capture, Path]) -> None:
    sink, path = installed
    pending = audit.submit("module_execute", actor_id="u1", resource_type="module", resource_id="m1", details={"n": 1})
    assert sink.events == []  # sinks hear of an event only once it is durable, in wait()
    event = pending.wait()
    written = _on_disk(path)
    assert [(r["seq"], r["action"], r["module_id"]) for r in written] == [(event.seq, "module_execute", "m1")]
    assert sink.events == [event]


def test_work_between_submit_and_wait_does_not_reorder_the_chain(installed: tuple[Capture, Path]) -> None:
    _, path = installed
    first = audit.submit("a1", actor_id="u1")
    audit.record("a2", actor_id="u1")  # a whole record() while the first is still pending
    assert first.wait().seq == 1
    assert [r["action"] for r in _on_disk(path)] == ["a1", "a2"]


def test_redaction_applies_at_submit(installed: tuple[Capture, Path]) -> None:
    _, path = installed
    audit.submit("x", actor_id="u1", details={"api_token": "wcp_secret", "totp_code": "123456"}).wait()
    details = _on_disk(path)[0]["details"]
    assert "wcp_secret" not in json.dumps(details) and "123456" not in json.dumps(details)


def test_a_failed_write_is_raised_by_wait_and_reaches_no_sink(
    installed: tuple[Capture, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sink, _ = installed
    writer = audit.current_trail().writer
    assert writer is not None

    def disk_full(events: list[dict[str, Any]], fsync: bool) -> list[dict[str, Any]]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.logfile, "append", disk_full)
    failures = metrics.AUDIT_WRITE_FAILURES._value.get()
    pending = audit.submit("module_execute", actor_id="u1")
    with pytest.raises(OSError, match="No space left"):
        pending.wait()
    assert sink.events == []
    assert metrics.AUDIT_WRITE_FAILURES._value.get() > failures
