"""Domain errors. The API turns them into RFC 9457 problems, the CLI into one line and exit 1.

Each carries a stable `code` (the last part of the problem `type` URI) and never internals.
"""

from __future__ import annotations

from typing import Any


class WcpError(Exception):
    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class InvalidInput(WcpError):
    status = 422
    code = "invalid-input"
    title = "Invalid input"


class Unauthorized(WcpError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(WcpError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(WcpError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(WcpError):
    status = 409
    code = "conflict"
    title = "Conflict"


class TooManyRequests(WcpError):
    status = 429
    code = "too-many-requests"
    title = "Too many requests"


class ServiceBusy(WcpError):
    status = 503
    code = "busy"
    title = "Service busy"


class HostFailed(WcpError):
    """The system agent could not do it (a host command failed); nothing was changed."""

    status = 502
    code = "host-failed"
    title = "The host could not do it"


class AgentUnreachable(WcpError):
    status = 503
    code = "agent-unavailable"
    title = "System agent unavailable"


class ProviderUnavailable(WcpError):
    """A directory or identity provider did not answer (or its TLS did not verify)."""

    status = 503
    code = "provider-unavailable"
    title = "Identity provider unavailable"
