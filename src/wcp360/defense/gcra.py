"""Rate limiting with GCRA (the generic cell rate algorithm): a token bucket in one number per key.

Why not the `limits` library: its strategies are fixed, moving and sliding windows, which cannot
express rate.yml's `requests_per_minute` + `burst` (a sustained rate plus a separate allowance for
bursts) and give no exact "retry after". GCRA keeps one timestamp per key (the theoretical arrival
time, TAT), decides in O(1), and on Redis is one short Lua script, atomic across servers.

For a rate of r per minute the emission interval is T = 60/r; `burst` b lets b+1 requests through
at once, after which one more every T.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis.asyncio



@dataclass(frozen=True)
class Quota:
    per_minute: float
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        return self.interval * self.burst


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int  # requests a full bucket holds (burst + 1)
    remaining: int
    retry_after: float  # seconds until the next request would be allowed (0 when allowed)
    reset_after: float  # seconds until the bucket is full again


def _verdict(quota: Quota, allowed: bool, now: float, tat: float, allow_at: float) -> Verdict:
    capacity = quota.burst + 1
    used = (tat - now) / quota.interval if tat > now else 0.0
    remaining = max(0, math.floor(capacity - used))
    return Verdict(allowed, capacity, remaining, 0.0 if allowed else max(0.0, allow_at - now), max(0.0, tat - now))


class Limiter(Protocol):
    async def hit(self, key: str, quota: Quota) -> Verdict: ...


class MemoryLimiter:
    """One process. Keys expire lazily; the map is pruned when it grows."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys
        self._now = clock

    async def hit(self, key: str, quota: Quota) -> Verdict:
        return self.hit_now(key, quota)

    def hit_now(self, key: str, quota: Quota) -> Verdict:
        with self._lock:
            now = self._now()
            tat = max(self._tat.get(key, now), now)
            new_tat = tat + quota.interval
            allow_at = new_tat - quota.tolerance - quota.interval
            if now < allow_at:
                return _verdict(quota, False, now, tat, allow_at)
            self._tat[key] = new_tat
            if len(self._tat) > self.max_keys:
                self._prune(now)
            return _verdict(quota, True, now, new_tat, allow_at)

    def _prune(self, now: float) -> None:
        for stale in [k for k, v in self._tat.items() if v <= now]:
            del self._tat[stale]


_GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance - interval
if now < allow_at then
  return {0, tostring(now), tostring(tat), tostring(allow_at)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(now), tostring(new_tat), tostring(allow_at)}
"""


class RedisLimiter:
    """Shared by every server using the same Redis; uses Redis's clock, so nodes agree."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "wcp360:rl:") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_GCRA_SCRIPT)

    async def hit(self, key: str, quota: Quota) -> Verdict:
        # redis.asyncio: the event loop is never blocked and no threadpool hop is paid per request.
        args = [quota.interval, quota.tolerance]
        allowed, now, tat, allow_at = await self._script(keys=[self.prefix + key], args=args)
        return _verdict(quota, bool(int(allowed)), float(now), float(tat), float(allow_at))


def limiter_for(storage: str) -> Limiter:
    if storage.startswith("memory://"):
        return MemoryLimiter()
    if storage.startswith(("redis://", "rediss://", "unix://")):
        import redis.asyncio  # only when configured: importing it costs every CLI command ~0.4 s

        return RedisLimiter(redis.asyncio.Redis.from_url(storage, socket_timeout=2))
    raise ValueError(f"unknown rate-limit storage {storage!r}: use memory:// or redis://")
