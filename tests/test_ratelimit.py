"""GCRA rate limiter: exact header values under a fake clock, and bounded memory."""

from __future__ import annotations

import dataclasses
import math

import pytest

from nexus_aio.stores.ratelimit import MemoryRateLimiter, RateLimitBackend, RateLimitDecision

T0 = 1_700_000_000.0  # an epoch-sized start, so float precision is exercised as in production


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock=clock)


def test_limit_5_example_exact_values(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    decisions = [limiter.hit_nowait("k", 5) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    # one token every 12 s: after k requests the bucket is full again at T0 + 12 k
    assert [d.reset for d in decisions] == [int(T0) + 12 * k for k in range(1, 6)]

    refused = limiter.hit_nowait("k", 5)
    assert refused == RateLimitDecision(False, 5, 0, int(T0) + 60, 12)
    assert refused.headers() == {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(T0) + 60),
        "Retry-After": "12",
    }

    clock.t = T0 + 12
    again = limiter.hit_nowait("k", 5)
    assert again == RateLimitDecision(True, 5, 0, int(T0) + 72, 0)


def test_allowed_headers_have_no_retry_after(limiter: MemoryRateLimiter) -> None:
    assert limiter.hit_nowait("k", 100).headers() == {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "99",
        "X-RateLimit-Reset": str(int(T0) + 1),  # 0.6 s to refill one token, rounded up
    }


def test_refused_hit_does_not_consume_or_move_reset(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    for _ in range(5):
        limiter.hit_nowait("k", 5)
    for _ in range(100):
        assert limiter.hit_nowait("k", 5).reset == int(T0) + 60
    clock.t = T0 + 12
    assert limiter.hit_nowait("k", 5).allowed


def test_burst_allows_capacity_at_once_then_refills_one_per_second(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    first = [limiter.hit_nowait("k", 60, burst=10) for _ in range(10)]
    assert [d.remaining for d in first] == list(range(9, -1, -1))
    assert first[-1].reset == int(T0) + 10
    assert all(d.limit == 60 for d in first)  # the header reports the per-minute limit
    refused = limiter.hit_nowait("k", 60, burst=10)
    assert (refused.allowed, refused.retry_after, refused.reset) == (False, 1, int(T0) + 10)

    for second in range(1, 6):
        clock.t = T0 + second
        assert limiter.hit_nowait("k", 60, burst=10) == RateLimitDecision(
            True, 60, 0, int(T0) + 10 + second, 0
        )
        assert not limiter.hit_nowait("k", 60, burst=10).allowed


def test_burst_smaller_than_limit_caps_the_bucket(limiter: MemoryRateLimiter) -> None:
    decisions = [limiter.hit_nowait("k", 600, burst=2) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2].retry_after == 1  # 0.1 s to the next token, rounded up to 1


def test_reset_rounds_up_non_integral_refill(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    interval = 60 / 7  # 8.571... s per token
    decisions = [limiter.hit_nowait("k", 7) for _ in range(7)]
    assert [d.remaining for d in decisions] == [6, 5, 4, 3, 2, 1, 0]
    assert [d.reset for d in decisions] == [math.ceil(T0 + interval * k) for k in range(1, 8)]
    assert decisions[-1].reset == int(T0) + 60  # seven intervals sum to exactly one minute
    refused = limiter.hit_nowait("k", 7)
    assert (refused.allowed, refused.retry_after, refused.reset) == (False, 9, int(T0) + 60)


def test_many_hits_at_one_instant_do_not_drift(limiter: MemoryRateLimiter) -> None:
    decisions = [limiter.hit_nowait("k", 1000) for _ in range(1001)]
    assert [d.allowed for d in decisions] == [True] * 1000 + [False]
    assert [d.remaining for d in decisions[:1000]] == list(range(999, -1, -1))
    assert decisions[999].reset == int(T0) + 60
    assert decisions[1000].retry_after == 1


def test_partial_tokens_refill_continuously(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    for _ in range(10):
        limiter.hit_nowait("k", 60, burst=10)
    clock.t = T0 + 2.5  # 2.5 tokens back: this request takes one, 1.5 are left
    assert limiter.hit_nowait("k", 60, burst=10).remaining == 1
    assert limiter.hit_nowait("k", 60, burst=10).remaining == 0
    refused = limiter.hit_nowait("k", 60, burst=10)
    assert (refused.allowed, refused.retry_after) == (False, 1)  # 0.5 s rounded up


def test_retry_after_counts_down_to_the_next_token(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    for _ in range(5):
        limiter.hit_nowait("k", 5)
    clock.t = T0 + 6
    assert limiter.hit_nowait("k", 5).retry_after == 6
    clock.t = T0 + 11.5
    assert limiter.hit_nowait("k", 5).retry_after == 1
    clock.t = T0 + 12
    assert limiter.hit_nowait("k", 5).allowed


def test_long_idle_bucket_is_full_again(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    for _ in range(5):
        limiter.hit_nowait("k", 5)
    clock.t = T0 + 3600
    assert limiter.hit_nowait("k", 5) == RateLimitDecision(True, 5, 4, int(T0) + 3612, 0)


def test_separate_keys_are_independent(limiter: MemoryRateLimiter) -> None:
    for _ in range(5):
        limiter.hit_nowait("wf:sum|client:1.1.1.1", 5)
    assert not limiter.hit_nowait("wf:sum|client:1.1.1.1", 5).allowed
    assert limiter.hit_nowait("wf:sum|client:2.2.2.2", 5).remaining == 4
    assert limiter.hit_nowait("wf:mul|client:1.1.1.1", 5).remaining == 4


def test_decision_is_a_frozen_dataclass(limiter: MemoryRateLimiter) -> None:
    decision = limiter.hit_nowait("k", 5)
    assert type(decision) is RateLimitDecision
    assert decision == RateLimitDecision(True, 5, 4, int(T0) + 12, 0)
    assert hash(decision) == hash(RateLimitDecision(True, 5, 4, int(T0) + 12, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.remaining = 99  # type: ignore[misc]


@pytest.mark.parametrize(("limit", "burst"), [(0, None), (-1, None), (5, 0)])
def test_rejects_non_positive_limit_or_burst(
    limiter: MemoryRateLimiter, limit: int, burst: int | None
) -> None:
    with pytest.raises(ValueError):
        limiter.hit_nowait("k", limit, burst)


async def test_async_hit_matches_hit_nowait(limiter: MemoryRateLimiter) -> None:
    assert isinstance(limiter, RateLimitBackend)
    assert await limiter.hit("k", 5) == RateLimitDecision(True, 5, 4, int(T0) + 12, 0)
    assert limiter.hit_nowait("k", 5).remaining == 3
    await limiter.ping()
    await limiter.close()
    assert len(limiter) == 0


def test_idle_keys_are_swept(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, sweep_every=10)
    for i in range(100):
        limiter.hit_nowait(f"old{i}", 5)
    assert len(limiter) == 100  # none idle yet: nothing may be forgotten
    clock.t = T0 + 60  # every old bucket is full again
    for i in range(60):
        limiter.hit_nowait(f"new{i}", 5)
    assert len(limiter) == 60  # all 100 idle keys forgotten, only the new ones left


def test_memory_stays_bounded_with_advancing_clock(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    hit = limiter.hit_nowait
    peak = 0
    for i in range(1_000_000):
        clock.t += 0.001
        hit(f"client:{i}", 5)
        if i % 1000 == 0:
            peak = max(peak, len(limiter))
    # each key stays busy 12 s = 12,000 hits; sweeping keeps the dict near twice that
    assert peak < 60_000
    assert len(limiter) < 60_000


def test_max_keys_caps_memory_with_frozen_clock(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=1000, sweep_every=100)
    for i in range(20_000):
        limiter.hit_nowait(f"client:{i}", 5)
        assert len(limiter) <= 1000
    assert len(limiter) >= 900


def test_eviction_drops_the_oldest_tat_first(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock, max_keys=10, sweep_every=1000)
    limiter.hit_nowait("early", 5)  # full again at T0 + 12
    clock.t = T0 + 1
    for i in range(9):
        limiter.hit_nowait(f"late{i}", 5)  # full again at T0 + 13
    limiter.hit_nowait("newcomer", 5)  # the 11th key: one must go
    assert len(limiter) == 10
    assert limiter.hit_nowait("late0", 5).remaining == 3  # kept: its first token still counts
    assert limiter.hit_nowait("early", 5).remaining == 4  # forgotten: a full bucket again
