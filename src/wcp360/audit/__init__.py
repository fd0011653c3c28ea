"""The audit trail: `audit.record(...)` is the single entry point for every security-relevant action
(`audit.submit(...).wait()` is the same in two halves, for hot paths that overlap the fsync).

Events are redacted, appended durably to a hash-chained JSON-lines file with Ed25519-signed
checkpoints (the source of truth), and copied to syslog and the database by forwarders.
See docs/audit.md.
"""

from __future__ import annotations

from wcp360.audit.events import AuditEvent, redact
from wcp360.audit.trail import (
    AuditSink,
    LogSink,
    PendingEvent,
    Trail,
    current_trail,
    install,
    record,
    sinks,
    submit,
)
from wcp360.request_context import RequestContext, bind_request, current_request  # re-exported

__all__ = [
    "AuditEvent",
    "AuditSink",
    "LogSink",
    "PendingEvent",
    "RequestContext",
    "Trail",
    "bind_request",
    "current_request",
    "current_trail",
    "install",
    "record",
    "redact",
    "sinks",
    "submit",
]
