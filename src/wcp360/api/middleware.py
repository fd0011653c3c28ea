"""Pure ASGI middleware that runs before any route: request context, headers, size and type guards.

Pure ASGI (not BaseHTTPMiddleware) so the body is streamed, not buffered, and the cost per
request stays small.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wcp360 import metrics
from wcp360.api.client_ip import Network, client_address
from wcp360.api.problems import problem
from wcp360.config.patterns import segment_pattern
from wcp360.request_context import RequestContext, bind_request

SECURITY_HEADERS = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cache-control", b"no-store"),
]
_log = structlog.get_logger("wcp360.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestContextMiddleware:
    """Request id, client address for the audit trail, security headers and latency metrics."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.trusted = list(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        offered = headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        peer = scope["client"][0] if scope.get("client") else None
        context = RequestContext(
            ip_address=client_address(peer, headers.get("x-forwarded-for"), self.trusted),
            user_agent=(headers.get("user-agent") or "")[:512] or None,
            request_id=request_id,
            channel="api",
        )
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                raw.extend(SECURITY_HEADERS)
                raw.append((b"x-request-id", request_id.encode()))
                message["headers"] = raw
            await send(message)

        with bind_request(context), structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                # Answer here rather than in Starlette's outermost error middleware, so even a 500
                # carries the request id and the security headers. Never the exception text.
                _log.exception("unhandled error", path=scope["path"], request_id=request_id)
                if response_started:
                    raise
                response = problem(500, "internal-error", "Internal error", "the server failed; quote the request id")
                await response(scope, receive, send_with_headers)
            finally:
                route = scope.get("route")
                template = route.path if route is not None else "unmatched"
                metrics.HTTP_REQUESTS.labels(scope["method"], template, str(status)).observe(
                    time.perf_counter() - started
                )


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` mid-stream. An HTTPException so FastAPI's body parsing re-raises it
    (it turns other exceptions into a 400) and the problem handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the limit is {limit} bytes")


class BodyGuardMiddleware:
    """413 for bodies over the limit (before reading them whole), 415 for non-JSON bodies.

    Limits: the configured default, or the override whose path pattern (`*` = one segment) matches.
    """

    def __init__(
        self,
        app: ASGIApp,
        default_limit: int,
        overrides: dict[str, int] | None = None,
        media_types: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.overrides = [(segment_pattern(p), n) for p, n in (overrides or {}).items()]
        self.media_types = [(segment_pattern(p), t) for p, t in (media_types or {}).items()]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.match(path):
                return limit
        return self.default_limit

    def accepted_types(self, path: str) -> tuple[str, ...]:
        for pattern, types in self.media_types:
            if pattern.match(path):
                return types
        return ("application/json",)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = Headers(scope=scope)
        limit = self.limit_for(path)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await problem(400, "bad-request", "Bad request", "invalid Content-Length")(scope, receive, send)
                return
            if int(declared) > limit:
                await _too_large(limit)(scope, receive, send)
                return
        has_body = declared != "0" and (declared is not None or "transfer-encoding" in headers)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and media_type not in self.accepted_types(path):
            accepted = ", ".join(self.accepted_types(path))
            await problem(415, "unsupported-media-type", "Unsupported media type", f"send {accepted}")(
                scope, receive, send
            )
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> ASGIApp:
    return problem(413, "payload-too-large", "Request body too large", f"the limit is {limit} bytes")
