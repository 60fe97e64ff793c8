"""The Redis stores against a real redis-server: the core's store contracts, then what only they do
(Redis TTLs, the lease lock, outages)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nexus_aio_redis import RedisExecutionStore, RedisRateLimiter, RedisSessionStore
from nexus_aio_redis.client import connect, redact

from nexus_aio.errors import StoreUnavailable
from nexus_aio.stores.ratelimit import MemoryRateLimiter
from nexus_aio.stores.sessions import Session
from nexus_aio.testing import (
    ExecutionStoreContract,
    ManualClock,
    RateLimitBackendContract,
    SessionStoreContract,
    opened,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(redis_server: Any) -> Any:
    c = connect(redis_server.url, timeout=1.0)
    yield c
    await c.aclose()


# -- the store contracts (nexus_aio.testing), on a real redis-server -----------------------------
class TestRedisExecutionStore(ExecutionStoreContract):
    # Shared by every instance: a starting one cannot tell an orphaned run from a live one.
    marks_interrupted = False

    @pytest.fixture
    async def store(self, redis_server: Any, clock: ManualClock) -> AsyncIterator[Any]:
        client = connect(redis_server.url, timeout=1.0)
        async with opened(RedisExecutionStore(client, clock=clock, follow_block=0.05)) as store:
            yield store


class TestRedisSessionStore(SessionStoreContract):
    # Sessions expire by Redis's own clock (PEXPIRE), which a test cannot move: the expiry
    # cases run in real time below (test_session_expires_through_redis_ttl_...).
    expiry_tolerance = 1.0

    @pytest.fixture
    async def store(self, redis_server: Any, clock: ManualClock) -> AsyncIterator[Any]:
        client = connect(redis_server.url, timeout=1.0)
        async with opened(RedisSessionStore(client, ttl=100, clock=clock)) as store:
            yield store


class TestRedisRateLimiter(RateLimitBackendContract):
    @pytest.fixture
    async def store(self, client: Any, clock: ManualClock) -> AsyncIterator[Any]:
        limiter = RedisRateLimiter(client, clock=clock, owns_client=False)
        yield limiter
        await limiter.close()


# -- what only the Redis stores do ---------------------------------------------------------------


async def test_ratelimit_decisions_match_memory_limiter_step_by_step(client: Any) -> None:
    clock = Clock()
    redis_rl = RedisRateLimiter(client, clock=clock, owns_client=False)
    memory = MemoryRateLimiter(clock=clock)
    steps = [0.0] * 12 + [0.5, 1.0, 2.9, 3.0, 0.0, 0.0, 30.0, 0.01]
    for advance in steps:
        clock.now += advance
        for key, limit, burst in (("a", 60, 5), ("b", 600, None), ("c", 7, 2)):
            got = await redis_rl.hit(key, limit, burst)
            want = memory.hit_nowait(key, limit, burst)
            assert got == want, (key, clock.now)
            assert got.headers() == want.headers()


async def test_ratelimit_with_redis_time_refuses_past_burst(client: Any) -> None:
    limiter = RedisRateLimiter(client, owns_client=False)
    decisions = [await limiter.hit("ip", 60, 3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == 1
    assert 0 < await client.pttl("nexus:rl:ip") <= 3000  # idle buckets vanish


async def test_session_expires_through_redis_ttl_and_touch_extends_it(client: Any) -> None:
    store = RedisSessionStore(client, ttl=0.3, owns_client=False)
    await store.save(Session("s", {}, 0, 0, 0))
    await store.touch("s")
    assert 200 < await client.pttl("nexus:session:s") <= 300
    await client.pexpire("nexus:session:s", 1)  # what Redis does when the TTL runs out
    await asyncio.sleep(0.01)
    assert await store.get("s") is None


async def test_session_count_and_purge_use_the_expiry_index(client: Any) -> None:
    clock = Clock()
    store = RedisSessionStore(client, ttl=10, clock=clock, owns_client=False)
    await store.save(Session("old", {}, 0, 0, 0))
    clock.now += 5
    await store.save(Session("new", {}, 0, 0, 0))
    clock.now += 6
    assert await store.count_active() == 1
    assert await store.purge_expired() == 1
    assert await client.zrange("nexus:sessions", 0, -1) == [b"new"]


async def test_session_lock_excludes_other_holders_until_released(client: Any) -> None:
    store_a = RedisSessionStore(client, owns_client=False)
    store_b = RedisSessionStore(client, owns_client=False)
    order: list[str] = []
    entered = asyncio.Event()

    async def first() -> None:
        async with store_a.lock("s"):
            order.append("a-in")
            entered.set()
            await asyncio.sleep(0.05)
            order.append("a-out")

    async def second() -> None:
        await entered.wait()
        async with store_b.lock("s"):
            order.append("b-in")

    await asyncio.wait_for(asyncio.gather(first(), second()), 5)
    assert order == ["a-in", "a-out", "b-in"]
    assert await client.exists("nexus:session-lock:s") == 0


async def test_session_lock_is_renewed_while_held(client: Any) -> None:
    store = RedisSessionStore(client, lock_lease=0.15, owns_client=False)
    async with store.lock("s"):
        await asyncio.sleep(0.4)  # well past one lease: the renewer keeps it
        assert await client.get("nexus:session-lock:s") is not None
    assert await client.exists("nexus:session-lock:s") == 0


async def test_stores_raise_store_unavailable_when_redis_is_down_and_recover(
    redis_server: Any,
) -> None:
    client = connect(redis_server.url, timeout=0.5)
    store = RedisSessionStore(client)
    limiter = RedisRateLimiter(client, owns_client=False)
    await store.save(Session("s", {"a": 1}, 0, 0, 0))
    redis_server.stop()
    with pytest.raises(StoreUnavailable) as info:
        await store.get("s")
    assert info.value.status == 503
    with pytest.raises(StoreUnavailable):
        await limiter.hit("k", 10)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    redis_server.start()  # empty data: the client reconnects by itself
    assert await store.get("s") is None
    assert (await limiter.hit("k", 10)).allowed
    await store.close()


def test_redact_hides_the_password() -> None:
    assert redact("redis://user:secret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
