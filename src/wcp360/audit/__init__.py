"""The audit trail's single entry point: `audit.record(...)`.

Every security-relevant action in WCP360 (API, CLI, policy denials, identity flows) calls
`record`. This module builds the event (seed 000 fields plus request context), redacts sensitive
fields, and hands it to the installed sinks. The tamper-evident file, syslog and database sinks
arrive with the audit-trail issue; until then the structured application log is the sink.
"""

from __future__ import annotations

from wcp360.audit.context import RequestContext, bind_request, current_request
from wcp360.audit.events import AuditEvent, redact
from wcp360.audit.trail import AuditSink, JsonLinesSink, LogSink, install, record, sinks

__all__ = [
    "AuditEvent",
    "AuditSink",
    "JsonLinesSink",
    "LogSink",
    "RequestContext",
    "bind_request",
    "current_request",
    "install",
    "record",
    "redact",
    "sinks",
]
