"""GCRA: burst plus sustained rate, exact retry-after; the same answers in memory and on Redis."""

from __future__ import annotations

import asyncio
import uuid

import redis
from hypothesis import given
from hypothesis import strategies as st

from wcp360.defense.gcra import MemoryLimiter, Quota, RedisLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock=clock)
    quota = Quota(per_minute=60, burst=2)
    verdicts = [limiter.hit_now("k", quota) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    assert verdicts[3].retry_after == 1.0 and verdicts[3].limit == 3
    clock.now += 1.0
    assert limiter.hit_now("k", quota).allowed
    assert not limiter.hit_now("k", quota).allowed
    assert limiter.hit_now("other", quota).allowed  # keys are independent


@given(
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=80),
    st.integers(min_value=1, max_value=120),
    st.integers(min_value=0, max_value=10),
)
def test_never_more_than_burst_plus_rate(gaps: list[float], per_minute: int, burst: int) -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock=clock)
    quota = Quota(per_minute, burst)
    allowed_at: list[float] = []
    for gap in gaps:
        clock.now += gap
        if limiter.hit_now("k", quota).allowed:
            allowed_at.append(clock.now)
    # In any span of time, at most burst+1 plus one per interval elapsed get through.
    for i, start in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            span = allowed_at[j] - start
            assert j - i + 1 <= burst + 1 + span / quota.interval + 1e-9


def test_redis_agrees_with_memory() -> None:
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
    limiter = RedisLimiter(client, prefix=f"wcp360-test:{uuid.uuid4().hex}:")
    quota = Quota(per_minute=6, burst=1)

    async def run() -> list[bool]:
        try:
            return [(await limiter.hit("k", quota)).allowed for _ in range(4)]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [True, True, False, False]
    sync = redis.Redis()
    assert sync.ping()


def test_sliding_windows_in_memory_and_on_redis() -> None:
    from wcp360.defense.windows import MemoryWindows, RedisWindows

    for windows in (MemoryWindows(), RedisWindows(redis.Redis(), prefix=f"wcp360-test:{uuid.uuid4().hex}:")):
        for _ in range(3):
            windows.add("failed_logins", "198.51.100.1")
        windows.add("failed_logins", "198.51.100.2")
        assert windows.count("failed_logins", "198.51.100.1", 300) == 3
        assert windows.count("failed_logins", "198.51.100.2", 300) == 1
        assert windows.count("failed_logins", "198.51.100.3", 300) == 0
        assert windows.count("failed_logins", "198.51.100.1", 0.000001) == 0
