"""`record()` and the sinks it writes to."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from wcp360 import metrics
from wcp360.audit.context import current_request
from wcp360.audit.events import AuditEvent, redact
from wcp360.keys import ensure_private_dir

if TYPE_CHECKING:
    from wcp360.authz.principal import Principal

DEFAULT_SENSITIVE = ("password", "token", "secret", "key", "totp", "code")


class AuditSink(Protocol):
    def write(self, event: AuditEvent) -> None: ...


class LogSink:
    """Writes each event as one structured log line on the `wcp360.audit` logger."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("wcp360.audit")

    def write(self, event: AuditEvent) -> None:
        self._log.info("audit", **event.as_dict())


_lock = threading.Lock()
_sinks: list[AuditSink] = [LogSink()]
_sensitive: tuple[str, ...] = DEFAULT_SENSITIVE


def install(new_sinks: list[AuditSink], sensitive_fields: tuple[str, ...] = DEFAULT_SENSITIVE) -> None:
    global _sinks, _sensitive
    with _lock:
        _sinks = list(new_sinks)
        _sensitive = tuple(sensitive_fields)


def sinks() -> list[AuditSink]:
    return list(_sinks)


def record(
    action: str,
    *,
    actor: Principal | None = None,
    actor_id: str | None = None,
    outcome: str = "success",
    resource_type: str | None = None,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one security-relevant action. The only way anything in WCP360 writes to the trail."""
    context = current_request()
    clean = redact({k: v for k, v in (details or {}).items() if v is not None}, _sensitive)
    if actor is not None:
        actor_id = actor.actor_label
        clean.setdefault("via", actor.via)
    event = AuditEvent(
        ts=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        action=action,
        outcome=outcome,
        actor_id=actor_id,
        resource_type=resource_type,
        resource_id=resource_id,
        ip_address=context.ip_address,
        user_agent=context.user_agent,
        request_id=context.request_id,
        channel=context.channel,
        details=clean,
    )
    metrics.AUDIT_EVENTS.labels(action=action).inc()
    for sink in _sinks:
        try:
            sink.write(event)
        except Exception:
            metrics.AUDIT_WRITE_FAILURES.inc()
            structlog.get_logger("wcp360.audit").exception("audit sink failed", action=action)
            raise
    return event


class JsonLinesSink:
    """One JSON object per line, appended with O_APPEND to a 0600 file in a 0700 directory.

    The hash chain, signed checkpoints, rotation and the syslog/database destinations of seed 003
    are the audit-trail issue's; this sink already keeps the seed's analysis commands working
    (`grep login_failure audit.log`).
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        ensure_private_dir(path.parent)
        self.path = path
        self.fsync = fsync
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def write(self, event: AuditEvent) -> None:
        line = json.dumps(event.as_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=False) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
