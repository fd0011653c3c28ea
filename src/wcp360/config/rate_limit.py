"""`rate_limit.yml`: global, per-user and per-endpoint limits and IP allow/deny lists (seed 003)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from wcp360.config.base import Duration, Network, Section


class Limit(Section):
    requests_per_minute: int = Field(gt=0)
    burst: int = Field(ge=0)
    window: Duration = timedelta(minutes=1)


class RateLimitConfig(Section):
    enabled: bool = True
    global_: Limit = Field(default=Limit(requests_per_minute=1000, burst=100), alias="global")
    per_user: Limit = Limit(requests_per_minute=100, burst=20)
    # Keys are request paths; `*` matches one path segment ("/api/v1/modules/*/execute").
    per_endpoint: dict[str, Limit] = {
        "/api/v1/auth/login": Limit(requests_per_minute=5, burst=2),
        # Each start is a row and a round trip to the provider; each verify a TOTP guess.
        "/api/v1/auth/oidc/*/login": Limit(requests_per_minute=10, burst=5),
        "/api/v1/auth/2fa/verify": Limit(requests_per_minute=5, burst=2),
    }
    ip_whitelist: list[Network] = []
    ip_blacklist: list[Network] = []
    # Peers whose X-Forwarded-For is believed (read right to left).
    trusted_proxies: list[Network] = []
    storage: str = "memory://"


class RateLimitFile(Section):
    rate_limiting: RateLimitConfig = RateLimitConfig()
