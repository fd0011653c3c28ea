"""`record()`, the single way anything in WCP360 writes to the audit trail, and its destinations.

The event (seed 000 fields plus request context) is redacted, then appended durably to the
hash-chained file, which is the source of truth: `record` returns once the event is on disk (or
raises, and the caller's action fails with it). Other sinks (the structured log, tests) see the
written event; the syslog and database copies are fed from the file by forwarders.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack

import structlog

from wcp360 import metrics
from wcp360.audit.events import AuditEvent, redact
from wcp360.request_context import current_request

if TYPE_CHECKING:
    from wcp360.audit.forwarder import Forwarder
    from wcp360.audit.writer import AuditWriter, Durable
    from wcp360.authz.principal import Principal

DEFAULT_SENSITIVE = ("password", "token", "secret", "key", "totp", "code")
# Events about a module carry its id at top level too, so `jq '.module_id'` works (seed 003).
_MODULE_TYPES = {"module"}


class AuditSink(Protocol):
    def write(self, event: AuditEvent) -> None: ...


class LogSink:
    """Writes each event as one structured log line on the `wcp360.audit` logger."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("wcp360.audit")

    def write(self, event: AuditEvent) -> None:
        self._log.info("audit", **event.as_dict())


@dataclass
class Trail:
    writer: AuditWriter | None = None
    sinks: list[AuditSink] = field(default_factory=list)
    forwarders: list[Forwarder] = field(default_factory=list)
    sensitive: tuple[str, ...] = DEFAULT_SENSITIVE

    def close(self) -> None:
        for forwarder in self.forwarders:
            forwarder.stop()
        if self.writer is not None:
            self.writer.close()


_lock = threading.Lock()
_trail = Trail(sinks=[LogSink()])


def install(
    new_sinks: list[AuditSink],
    sensitive_fields: tuple[str, ...] = DEFAULT_SENSITIVE,
    writer: AuditWriter | None = None,
    forwarders: list[Forwarder] | None = None,
) -> Trail:
    global _trail
    with _lock:
        _trail = Trail(writer, list(new_sinks), list(forwarders or []), tuple(sensitive_fields))
        return _trail


def current_trail() -> Trail:
    return _trail


def sinks() -> list[AuditSink]:
    return list(_trail.sinks)


class EventFields(TypedDict, total=False):
    """What an event says besides its action (the keyword arguments of `record` and `submit`)."""

    actor: Principal | None
    actor_id: str | None
    outcome: str
    resource_type: str | None
    resource_id: str | None
    details: dict[str, Any] | None


def record(action: str, **fields: Unpack[EventFields]) -> AuditEvent:
    """Record one security-relevant action. The only way anything in WCP360 writes to the trail."""
    return _submit(action, False, **fields).wait()


def submit(action: str, **fields: Unpack[EventFields]) -> PendingEvent:
    """`record()` in two halves: queue the event now, `wait()` for it to be durable later.

    For a hot path whose event is known before its last database write: the write runs while the
    trail's fsync does. The event is written whatever happens in between; call `wait()` before
    answering, so that nothing is acknowledged before its event is on disk.
    """
    return _submit(action, True, **fields)


def _submit(
    action: str,
    overlap: bool,
    *,
    actor: Principal | None = None,
    actor_id: str | None = None,
    outcome: str = "success",
    resource_type: str | None = None,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> PendingEvent:
    trail = _trail
    context = current_request()
    clean = redact({k: v for k, v in (details or {}).items() if v is not None}, trail.sensitive)
    if actor is not None:
        actor_id = actor.actor_label
        clean.setdefault("via", actor.via)
    body: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "action": action,
        "outcome": outcome,
        "actor_id": actor_id,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "ip_address": context.ip_address,
        "user_agent": context.user_agent,
        "request_id": context.request_id,
        "channel": context.channel,
        "details": clean,
    }
    if resource_type in _MODULE_TYPES:
        body["module_id"] = resource_id
    written = trail.writer.enqueue(body, overlap) if trail.writer is not None else None
    return PendingEvent(trail, body, written)


@dataclass
class PendingEvent:
    """An event handed to the writer; `wait()` returns it once durable and feeds the sinks."""

    trail: Trail
    body: dict[str, Any]
    written: Durable | None

    def wait(self, timeout: float = 30.0) -> AuditEvent:
        seq = None
        if self.written is not None:
            try:
                seq = self.written.result(timeout)["seq"]
            except Exception:
                metrics.AUDIT_WRITE_FAILURES.inc()
                raise
        action = self.body["action"]
        event = AuditEvent(seq=seq, **{k: v for k, v in self.body.items() if k != "module_id"})
        metrics.AUDIT_EVENTS.labels(action=action).inc()
        for sink in self.trail.sinks:
            try:
                sink.write(event)
            except Exception:
                metrics.AUDIT_WRITE_FAILURES.inc()
                structlog.get_logger("wcp360.audit").exception("audit sink failed", action=action)
        return event
