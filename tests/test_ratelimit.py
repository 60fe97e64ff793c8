"""GCRA rate limiting: the backend contract (``nexus_aio.testing``) on the memory limiter, then its
own sync fast path and bounded memory."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from nexus_aio.stores.ratelimit import MemoryRateLimiter, RateLimitBackend, RateLimitDecision
from nexus_aio.testing import ManualClock, RateLimitBackendContract

T0 = 1_700_000_000.0  # an epoch-sized start, so float precision is exercised as in production


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock=clock)


# -- the backend contract -------------------------------------------------------------------------
class TestMemoryRateLimiter(RateLimitBackendContract):
    @pytest.fixture
    async def store(self, clock: ManualClock) -> AsyncIterator[RateLimitBackend]:
        limiter = MemoryRateLimiter(clock=clock)
        yield limiter
        await limiter.close()


# -- the memory limiter's own: the sync fast path and bounded memory ------------------------------
def test_decision_is_a_frozen_dataclass(limiter: MemoryRateLimiter) -> None:
    decision = limiter.hit_nowait("k", 5)
    assert type(decision) is RateLimitDecision
    assert decision == RateLimitDecision(True, 5, 4, int(T0) + 12, 0)
    assert hash(decision) == hash(RateLimitDecision(True, 5, 4, int(T0) + 12, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.remaining = 99  # type: ignore[misc]


@pytest.mark.parametrize(("limit", "burst"), [(0, None), (-1, None), (5, 0)])
def test_hit_nowait_rejects_non_positive_limit_or_burst(
    limiter: MemoryRateLimiter, limit: int, burst: int | None
) -> None:
    with pytest.raises(ValueError):
        limiter.hit_nowait("k", limit, burst)


def test_refund_nowait_gives_the_token_back(limiter: MemoryRateLimiter) -> None:
    assert limiter.hit_nowait("k", 6, 1).allowed
    limiter.refund_nowait("k", 6, 1)
    assert limiter.hit_nowait("k", 6, 1).allowed
    assert not limiter.hit_nowait("k", 6, 1).allowed


async def test_async_hit_matches_hit_nowait(limiter: MemoryRateLimiter) -> None:
    assert isinstance(limiter, RateLimitBackend)
    assert await limiter.hit("k", 5) == RateLimitDecision(True, 5, 4, int(T0) + 12, 0)
    assert limiter.hit_nowait("k", 5).remaining == 3
    await limiter.ping()
    await limiter.close()
    assert len(limiter) == 0


def test_idle_keys_are_swept(clock: ManualClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, sweep_every=10)
    for i in range(100):
        limiter.hit_nowait(f"old{i}", 5)
    assert len(limiter) == 100  # none idle yet: nothing may be forgotten
    clock.now = T0 + 60  # every old bucket is full again
    for i in range(60):
        limiter.hit_nowait(f"new{i}", 5)
    assert len(limiter) == 60  # all 100 idle keys forgotten, only the new ones left


def test_memory_stays_bounded_with_advancing_clock(clock: ManualClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    hit = limiter.hit_nowait
    peak = 0
    for i in range(1_000_000):
        clock.now += 0.001
        hit(f"client:{i}", 5)
        if i % 1000 == 0:
            peak = max(peak, len(limiter))
    # each key stays busy 12 s = 12,000 hits; sweeping keeps the dict near twice that
    assert peak < 60_000
    assert len(limiter) < 60_000


def test_max_keys_caps_memory_with_frozen_clock(clock: ManualClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=1000, sweep_every=100)
    for i in range(20_000):
        limiter.hit_nowait(f"client:{i}", 5)
        assert len(limiter) <= 1000
    assert len(limiter) >= 900


def test_eviction_drops_the_oldest_tat_first(clock: ManualClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=10, sweep_every=1000)
    limiter.hit_nowait("early", 5)  # full again at T0 + 12
    clock.now = T0 + 1
    for i in range(9):
        limiter.hit_nowait(f"late{i}", 5)  # full again at T0 + 13
    limiter.hit_nowait("newcomer", 5)  # the 11th key: one must go
    assert len(limiter) == 10
    assert limiter.hit_nowait("late0", 5).remaining == 3  # kept: its first token still counts
    assert limiter.hit_nowait("early", 5).remaining == 4  # forgotten: a full bucket again
