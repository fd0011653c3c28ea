"""Sliding-window event counters for IDS rules and brute-force protection: in memory or on Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis


# Nothing the IDS asks about looks further back than this.
MAX_WINDOW = 24 * 3600.0


class Windows(Protocol):
    def add(self, counter: str, key: str) -> None: ...

    def count(self, counter: str, key: str, window: float) -> int: ...


class MemoryWindows:
    def __init__(self) -> None:
        self._events: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._now = time.time

    def add(self, counter: str, key: str) -> None:
        now = self._now()
        with self._lock:
            series = self._events.setdefault((counter, key), deque())
            series.append(now)
            while series and series[0] < now - MAX_WINDOW:
                series.popleft()

    def count(self, counter: str, key: str, window: float) -> int:
        cutoff = self._now() - window
        with self._lock:
            series = self._events.get((counter, key))
            return sum(1 for t in reversed(series) if t > cutoff) if series else 0


class RedisWindows:
    """A sorted set per (counter, key), scored by time; shared by every server on the Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "wcp360:win:") -> None:
        self.client = client
        self.prefix = prefix

    def add(self, counter: str, key: str) -> None:
        name = f"{self.prefix}{counter}:{key}"
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zadd(name, {uuid.uuid4().hex: now})
        pipe.zremrangebyscore(name, "-inf", now - MAX_WINDOW)
        pipe.expire(name, int(MAX_WINDOW))
        pipe.execute()

    def count(self, counter: str, key: str, window: float) -> int:
        count: int = self.client.zcount(f"{self.prefix}{counter}:{key}", time.time() - window, "+inf")
        return count


def windows_for(storage: str) -> Windows:
    if storage.startswith("memory://"):
        return MemoryWindows()
    if storage.startswith(("redis://", "rediss://", "unix://")):
        import redis  # only when configured (see gcra.limiter_for)

        return RedisWindows(redis.Redis.from_url(storage, socket_timeout=2))
    raise ValueError(f"unknown IDS storage {storage!r}: use memory:// or redis://")
