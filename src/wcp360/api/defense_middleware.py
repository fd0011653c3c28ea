"""Before any route (and so before any password hashing or module work): whitelist, blacklist
and bans (403), then rate limits (429 with Retry-After and RateLimit-* headers)."""

from __future__ import annotations

import math

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wcp360.api.problems import problem
from wcp360.defense.gcra import Verdict
from wcp360.defense.policy import Defense
from wcp360.request_context import current_request


class DefenseMiddleware:
    """Renders what `Defense.admit` decides; the decisions themselves live in the defense package."""

    def __init__(self, app: ASGIApp, defense: Defense) -> None:
        self.app = app
        self.defense = defense

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admission = await self.defense.admit(
            current_request().ip_address, scope["path"], Headers(scope=scope).get("authorization")
        )
        if admission.decision == "blocked":
            response = problem(403, "address-blocked", "Forbidden", "requests from this address are blocked")
            await response(scope, receive, send)
            return
        verdict = admission.verdict
        if admission.decision == "limited" and verdict is not None:
            await _refusal(verdict)(scope, receive, send)
            return
        if verdict is None:
            await self.app(scope, receive, send)
            return
        headers = _rate_headers(verdict)

        async def send_with_rate(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_rate)


def _refusal(verdict: Verdict) -> Response:
    response = problem(
        429, "too-many-requests", "Too many requests", f"retry after {math.ceil(verdict.retry_after)} s"
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after)))
    for name, value in _rate_headers(verdict):
        response.headers[name.decode()] = value.decode()
    return response


def _rate_headers(verdict: Verdict) -> list[tuple[bytes, bytes]]:
    # draft-ietf-httpapi-ratelimit-headers
    return [
        (b"ratelimit-limit", str(verdict.limit).encode()),
        (b"ratelimit-remaining", str(verdict.remaining).encode()),
        (b"ratelimit-reset", str(math.ceil(verdict.reset_after)).encode()),
    ]
