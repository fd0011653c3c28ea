"""Before any route (and so before any password hashing or module work): whitelist, blacklist
and bans (403), then rate limits (429 with Retry-After and RateLimit-* headers)."""

from __future__ import annotations

import math
import time

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wcp360 import audit, metrics
from wcp360.api.problems import problem
from wcp360.defense.gcra import Verdict
from wcp360.defense.policy import Defense

# A refused client is audited at most once a minute per key (the trail must not flood).
_SAMPLE_SECONDS = 60.0


class DefenseMiddleware:
    def __init__(self, app: ASGIApp, defense: Defense) -> None:
        self.app = app
        self.defense = defense
        self._sampled: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defense = self.defense
        address = audit.current_request().ip_address
        if defense.bans.whitelisted(address):
            await self.app(scope, receive, send)
            return
        if defense.bans.loaded_at == 0.0:  # the first request: nothing to go on yet
            await run_in_threadpool(defense.bans.reload)
        defense.bans.refresh_if_stale()  # later ones never wait: a reload runs on its own thread
        if defense.blacklisted(address) or defense.bans.banned(address) is not None:
            await problem(403, "address-blocked", "Forbidden", "requests from this address are blocked")(
                scope, receive, send
            )
            return
        verdict: Verdict | None = None
        if defense.rate.enabled:
            user = defense.user_key(Headers(scope=scope).get("authorization"))
            verdict = await defense.check(address, scope["path"], user)
            if verdict is not None and not verdict.allowed:
                await self._refuse(scope, receive, send, verdict, user or str(address))
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

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, verdict: Verdict, key: str) -> None:
        metrics.RATE_LIMIT_VIOLATIONS.inc()
        now = time.monotonic()
        if now - self._sampled.get(key, -1e9) >= _SAMPLE_SECONDS:
            self._sampled[key] = now
            if len(self._sampled) > 50_000:
                self._sampled = {k: v for k, v in self._sampled.items() if now - v < _SAMPLE_SECONDS}
            await run_in_threadpool(
                audit.record,
                "rate_limit_exceeded",
                actor_id=key if key.startswith("u:") else None,
                outcome="denied",
                resource_type="route",
                resource_id=scope["path"],
                details={"sampled": "first refusal per key per minute"},
            )
        response = problem(
            429, "too-many-requests", "Too many requests", f"retry after {math.ceil(verdict.retry_after)} s"
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after)))
        for name, value in _rate_headers(verdict):
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)


def _rate_headers(verdict: Verdict) -> list[tuple[bytes, bytes]]:
    # draft-ietf-httpapi-ratelimit-headers
    return [
        (b"ratelimit-limit", str(verdict.limit).encode()),
        (b"ratelimit-remaining", str(verdict.remaining).encode()),
        (b"ratelimit-reset", str(math.ceil(verdict.reset_after)).encode()),
    ]
