"""Which limits apply to a request, and the Defense bundle the runtime builds from the config."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from wcp360.api.paths import segment_pattern
from wcp360.config.rate_limit import Limit, RateLimitConfig
from wcp360.defense.alerts import Alerter
from wcp360.defense.bans import BanList
from wcp360.defense.credentials import VerifiedCredentials
from wcp360.defense.firewall import FirewallStatus, NftFirewall
from wcp360.defense.gcra import Limiter, Quota, Verdict
from wcp360.defense.ids import Ids
from wcp360.defense.login_guard import LoginGuard
from wcp360.defense.throttles import Throttles
from wcp360.defense.windows import Windows
from wcp360.identity.jwt_codec import JwtCodec


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
    codec: JwtCodec
    firewall: NftFirewall | None = None
    endpoints: list[tuple[re.Pattern[str], str, Limit]] = field(default_factory=list)
    verified: VerifiedCredentials = field(default_factory=VerifiedCredentials)

    def __post_init__(self) -> None:
        self.endpoints = [(segment_pattern(p), p, limit) for p, limit in self.rate.per_endpoint.items()]
        self.blacklist = list(self.rate.ip_blacklist)

    def attach_firewall(self, firewall: NftFirewall) -> FirewallStatus:
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
            return "u:" + str(self.codec.verify(token).subject)
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
