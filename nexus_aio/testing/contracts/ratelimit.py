"""The contract of :class:`~nexus_aio.stores.ratelimit.RateLimitBackend`: GCRA arithmetic as the
``X-RateLimit-*`` headers show it, refunds, and health."""

from __future__ import annotations

import math

import pytest

from nexus_aio.stores.ratelimit import RateLimitBackend, RateLimitDecision
from nexus_aio.testing.contracts.base import T0, ManualClock, StoreContract, async_tests

__all__ = ["RateLimitBackendContract"]


async def hits(
    store: RateLimitBackend, n: int, limit: int, burst: int | None = None, key: str = "k"
) -> list[RateLimitDecision]:
    """``n`` hits of ``key`` in a row."""
    return [await store.hit(key, limit, burst) for _ in range(n)]


@async_tests
class RateLimitBackendContract(StoreContract):
    """Subclass it and provide ``store``: the backend, ready, counting time by ``clock``.

    Every number is the exact one of the GCRA documented in ``nexus_aio.stores.ratelimit``.
    A backend that overrides ``refund()`` must give the token back; one that keeps the default
    must not (it never under-counts).
    """

    async def test_hit_returns_a_decision(self, store: RateLimitBackend) -> None:
        decision = await store.hit("k", 5)
        assert type(decision) is RateLimitDecision
        assert decision == RateLimitDecision(True, 5, 4, int(T0) + 12, 0)

    async def test_limit_5_example_exact_values(
        self, store: RateLimitBackend, clock: ManualClock
    ) -> None:
        decisions = await hits(store, 5, 5)
        assert [d.allowed for d in decisions] == [True] * 5
        assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
        # one token every 12 s: after k requests the bucket is full again at T0 + 12 k
        assert [d.reset for d in decisions] == [int(T0) + 12 * k for k in range(1, 6)]
        refused = await store.hit("k", 5)
        assert refused == RateLimitDecision(False, 5, 0, int(T0) + 60, 12)
        assert refused.headers() == {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(T0) + 60),
            "Retry-After": "12",
        }
        clock.now = T0 + 12
        assert await store.hit("k", 5) == RateLimitDecision(True, 5, 0, int(T0) + 72, 0)

    async def test_allowed_headers_have_no_retry_after(self, store: RateLimitBackend) -> None:
        assert (await store.hit("k", 100)).headers() == {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "99",
            "X-RateLimit-Reset": str(int(T0) + 1),  # 0.6 s to refill one token, rounded up
        }

    async def test_refused_hit_does_not_consume_or_move_reset(
        self, store: RateLimitBackend, clock: ManualClock
    ) -> None:
        await hits(store, 5, 5)
        for _ in range(20):
            assert (await store.hit("k", 5)).reset == int(T0) + 60
        clock.now = T0 + 12
        assert (await store.hit("k", 5)).allowed

    async def test_burst_allows_its_capacity_at_once_then_refills(
        self, store: RateLimitBackend, clock: ManualClock
    ) -> None:
        first = await hits(store, 10, 60, 10)
        assert [d.remaining for d in first] == list(range(9, -1, -1))
        assert first[-1].reset == int(T0) + 10
        assert all(d.limit == 60 for d in first)  # the header reports the per-minute limit
        refused = await store.hit("k", 60, 10)
        assert (refused.allowed, refused.retry_after, refused.reset) == (False, 1, int(T0) + 10)
        for second in range(1, 4):
            clock.now = T0 + second
            allowed = await store.hit("k", 60, 10)
            assert allowed == RateLimitDecision(True, 60, 0, int(T0) + 10 + second, 0)
            assert not (await store.hit("k", 60, 10)).allowed

    async def test_burst_smaller_than_limit_caps_the_bucket(self, store: RateLimitBackend) -> None:
        decisions = await hits(store, 3, 120, 2)
        assert [d.allowed for d in decisions] == [True, True, False]
        assert decisions[2].retry_after == 1  # 0.5 s to the next token, rounded up

    async def test_reset_rounds_up_a_non_integral_refill(self, store: RateLimitBackend) -> None:
        interval = 60 / 7
        decisions = await hits(store, 7, 7)
        assert [d.remaining for d in decisions] == [6, 5, 4, 3, 2, 1, 0]
        assert [d.reset for d in decisions] == [math.ceil(T0 + interval * k) for k in range(1, 8)]
        assert decisions[-1].reset == int(T0) + 60  # seven intervals sum to exactly one minute
        refused = await store.hit("k", 7)
        assert (refused.allowed, refused.retry_after, refused.reset) == (False, 9, int(T0) + 60)

    async def test_many_hits_at_one_instant_do_not_drift(self, store: RateLimitBackend) -> None:
        decisions = await hits(store, 101, 100)
        assert [d.allowed for d in decisions] == [True] * 100 + [False]
        assert [d.remaining for d in decisions[:100]] == list(range(99, -1, -1))
        assert decisions[99].reset == int(T0) + 60
        assert decisions[100].retry_after == 1

    async def test_partial_tokens_refill_continuously(
        self, store: RateLimitBackend, clock: ManualClock
    ) -> None:
        await hits(store, 10, 60, 10)
        clock.now = T0 + 2.5  # 2.5 tokens back: this request takes one, 1.5 are left
        assert (await store.hit("k", 60, 10)).remaining == 1
        assert (await store.hit("k", 60, 10)).remaining == 0
        refused = await store.hit("k", 60, 10)
        assert (refused.allowed, refused.retry_after) == (False, 1)  # 0.5 s rounded up

    async def test_retry_after_counts_down_to_the_next_token(
        self, store: RateLimitBackend, clock: ManualClock
    ) -> None:
        await hits(store, 5, 5)
        clock.now = T0 + 6
        assert (await store.hit("k", 5)).retry_after == 6
        clock.now = T0 + 11.5
        assert (await store.hit("k", 5)).retry_after == 1
        clock.now = T0 + 12
        assert (await store.hit("k", 5)).allowed

    async def test_a_long_idle_bucket_is_full_again(
        self, store: RateLimitBackend, clock: ManualClock
    ) -> None:
        await hits(store, 5, 5)
        clock.now = T0 + 3600
        assert await store.hit("k", 5) == RateLimitDecision(True, 5, 4, int(T0) + 3612, 0)

    async def test_separate_keys_are_independent(self, store: RateLimitBackend) -> None:
        for _ in range(5):
            await store.hit("wf:sum|client:1.1.1.1", 5)
        assert not (await store.hit("wf:sum|client:1.1.1.1", 5)).allowed
        assert (await store.hit("wf:sum|client:2.2.2.2", 5)).remaining == 4
        assert (await store.hit("wf:mul|client:1.1.1.1", 5)).remaining == 4

    @pytest.mark.parametrize(("limit", "burst"), [(0, None), (-1, None), (5, 0), (5, -2)])
    async def test_rejects_a_non_positive_limit_or_burst(
        self, store: RateLimitBackend, limit: int, burst: int | None
    ) -> None:
        with pytest.raises(ValueError):
            await store.hit("k", limit, burst)

    async def test_refund_gives_back_the_token_of_an_allowed_hit(
        self, store: RateLimitBackend
    ) -> None:
        assert (await store.hit("k", 6, 1)).allowed
        assert not (await store.hit("k", 6, 1)).allowed
        await store.refund("k", 6, 1)
        after = await store.hit("k", 6, 1)
        if type(store).refund is RateLimitBackend.refund:
            assert not after.allowed  # the default refunds nothing: never under-counts
        else:
            assert after.allowed
            assert not (await store.hit("k", 6, 1)).allowed  # exactly one token came back

    async def test_refund_never_grants_more_than_a_full_bucket(
        self, store: RateLimitBackend
    ) -> None:
        await store.refund("unknown", 6, 2)  # nothing to give back: harmless
        decisions = await hits(store, 3, 6, 2, key="unknown")
        assert [d.allowed for d in decisions] == [True, True, False]
        assert (await store.hit("once", 6, 2)).allowed
        for _ in range(3):  # more refunds than hits
            await store.refund("once", 6, 2)
        decisions = await hits(store, 3, 6, 2, key="once")
        assert [d.allowed for d in decisions] == [True, True, False]

    async def test_ping_succeeds_on_a_healthy_backend(self, store: RateLimitBackend) -> None:
        await store.ping()
