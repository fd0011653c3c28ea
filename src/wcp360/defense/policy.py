"""The Defense bundle the runtime builds from the config, and its two doors: `admit` for every
request (before any route) and `sign_in` for the sign-in sequence. Nothing here imports the API
or identity: who a token belongs to and how a password is checked are handed in."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from anyio import to_thread

from wcp360 import audit, metrics
from wcp360.config.patterns import segment_pattern
from wcp360.config.rate_limit import Limit, RateLimitConfig
from wcp360.defense.alerts import Alerter
from wcp360.defense.bans import BanList
from wcp360.defense.credentials import VerifiedCredentials
from wcp360.defense.firewall import Firewall, FirewallStatus
from wcp360.defense.gcra import Limiter, Quota, Verdict
from wcp360.defense.ids import Ids
from wcp360.defense.login_guard import LoginGuard
from wcp360.defense.throttles import Throttles
from wcp360.defense.windows import Windows
from wcp360.errors import TooManyRequests

T = TypeVar("T")
# A refused client is audited at most once a minute per key (the trail must not flood).
SAMPLE_SECONDS = 60.0
Alert = Callable[[str, str, dict[str, Any]], None]


class SignInAccounts(Protocol):
    """What the sign-in sequence needs from the accounts (identity's AuthService), handed in."""

    def login_name(self, username: str) -> str: ...

    def record_throttled(self, username: str) -> None: ...

    def notify_under_attack(self, username: str, alert: Alert) -> None: ...


@dataclass(frozen=True)
class Admission:
    """What `admit` decided: pass (with the tightest rate verdict, for RateLimit-* headers, when
    limits are on), blocked (403), or limited (429 with the refusing verdict)."""

    decision: Literal["pass", "blocked", "limited"]
    verdict: Verdict | None = None


@dataclass
class Defense:
    rate: RateLimitConfig
    limiter: Limiter
    windows: Windows
    bans: BanList
    throttles: Throttles
    ids: Ids
    guard: LoginGuard
    alerter: Alerter
    # The account a bearer JWT was issued to; raises for one whose signature does not check.
    subject_of: Callable[[str], str]
    firewall: Firewall | None = None
    endpoints: list[tuple[re.Pattern[str], str, Limit]] = field(default_factory=list)
    verified: VerifiedCredentials = field(default_factory=VerifiedCredentials)

    def __post_init__(self) -> None:
        self.endpoints = [(segment_pattern(p), p, limit) for p, limit in self.rate.per_endpoint.items()]
        self.blacklist = list(self.rate.ip_blacklist)
        self._sampled: dict[str, float] = {}

    async def admit(self, address: str | None, path: str, authorization: str | None) -> Admission:
        """Every request, before any route: whitelist, then blacklist and bans, then rate limits.
        A refusal is counted, and audited at most once a minute per key."""
        if self.bans.whitelisted(address):
            return Admission("pass")
        if self.bans.loaded_at == 0.0:  # the first request: nothing to go on yet
            await to_thread.run_sync(self.bans.reload)
        self.bans.refresh_if_stale()  # later ones never wait: a reload runs on its own thread
        if self.blacklisted(address) or self.bans.banned(address) is not None:
            return Admission("blocked")
        if not self.rate.enabled:
            return Admission("pass")
        user = self.user_key(authorization)
        verdict = await self.check(address, path, user)
        if verdict is not None and not verdict.allowed:
            metrics.RATE_LIMIT_VIOLATIONS.inc()
            await self._record_refusal(user or str(address), path)
            return Admission("limited", verdict)
        return Admission("pass", verdict)

    async def _record_refusal(self, key: str, path: str) -> None:
        now = time.monotonic()
        if now - self._sampled.get(key, -1e9) < SAMPLE_SECONDS:
            return
        self._sampled[key] = now
        if len(self._sampled) > 50_000:
            self._sampled = {k: v for k, v in self._sampled.items() if now - v < SAMPLE_SECONDS}

        def record() -> None:
            audit.record(
                "rate_limit_exceeded",
                actor_id=key if key.startswith("u:") else None,
                outcome="denied",
                resource_type="route",
                resource_id=path,
                details={"sampled": "first refusal per key per minute"},
            )

        await to_thread.run_sync(record)

    async def sign_in(
        self, address: str | None, username: str, accounts: SignInAccounts, attempt: Callable[[], T]
    ) -> T:
        """The whole sign-in sequence: a pair (address, account) over its failures is refused (429,
        and counted as a failure); an account under attack delays strangers and tells its owner;
        then the password check runs on a bounded, low-priority slot (503 when too many wait)."""
        # Counted under the account's name, or a keyed hash of a name no account has.
        guard = await to_thread.run_sync(lambda: self.guard.check(address, accounts.login_name(username)))
        if guard.refused:
            await to_thread.run_sync(accounts.record_throttled, username)
            raise TooManyRequests(
                "too many failed sign-ins for this account from your address",
                headers={"Retry-After": str(math.ceil(guard.retry_after))},
            )
        if guard.under_attack:
            await to_thread.run_sync(accounts.notify_under_attack, username, self.alerter)
        if guard.delay:
            await asyncio.sleep(guard.delay)
        async with self.guard.password_check_slot():
            return await self.guard.run_check(attempt)

    def attach_firewall(self, firewall: Firewall) -> FirewallStatus:
        """Apply the ruleset and mirror every ban into it from now on (the server does this)."""
        self.firewall = firewall
        status = firewall.apply()
        if status.active:
            self.bans.mirror(firewall.ban, firewall.unban)
        return status

    def blacklisted(self, address: str | None) -> bool:
        import ipaddress

        try:
            ip = ipaddress.ip_address(address) if address else None
        except ValueError:
            return False
        return ip is not None and any(ip in network for network in self.blacklist)

    def user_key(self, authorization: str | None) -> str | None:
        """Who is asking, without touching the database: the account of a verified credential (a
        JWT whose signature checks, or an API token authentication has verified), else None and the
        request is keyed by its address. An unverified credential never chooses a key: a forged
        token must neither get a fresh bucket nor spend its victim's."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if token.startswith("wcp_"):
            account = self.verified.account_of(token)
            return f"u:{account}" if account else None
        try:
            return "u:" + self.subject_of(token)
        except Exception:
            return None

    async def check(self, address: str | None, path: str, user: str | None) -> Verdict | None:
        """The first refusing verdict, else the tightest allowing one (for RateLimit-* headers)."""
        factor = self.throttles.factor_for(user[2:] if user else None, address)
        checks: list[tuple[str, Limit]] = [(f"g:{address}", self.rate.global_)]
        for pattern, name, limit in self.endpoints:
            if pattern.match(path):
                checks.append((f"e:{name}:{user or address}", limit))
                break
        if user is not None:
            checks.append((f"p:{user}", self.rate.per_user))
        tightest: Verdict | None = None
        for key, limit in checks:
            verdict = await self.limiter.hit(key, _quota(limit, factor))
            if not verdict.allowed:
                return verdict
            if tightest is None or verdict.remaining < tightest.remaining:
                tightest = verdict
        return tightest


def _quota(limit: Limit, factor: float) -> Quota:
    return Quota(limit.requests_per_minute * factor, max(0, math.floor(limit.burst * factor)))
