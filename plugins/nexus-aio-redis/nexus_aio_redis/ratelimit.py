"""GCRA rate limiting on Redis: one atomic Lua script per request, shared by every instance.

Same arithmetic, numbers and headers as the core's
:class:`~nexus_aio.stores.ratelimit.MemoryRateLimiter`
(see that module for GCRA): the key holds the bucket's TAT as epoch seconds, and the script reads
the clock from Redis ``TIME`` so that instances on machines with skewed clocks still share one
bucket fairly. Each key expires when its bucket is full again, so idle clients cost no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from nexus_aio.stores.ratelimit import RateLimitBackend, RateLimitDecision

from .client import Guard

__all__ = ["RedisRateLimiter"]

# ARGV: interval (s per token), span (capacity * interval), now (epoch s; "" = Redis TIME).
# Returns {allowed, remaining, reset, retry_after}; mirrors MemoryRateLimiter.hit_nowait.
_HIT = """
local interval = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local eps = 1e-6
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now <= span + eps then
  local ttl = math.max(1, math.ceil((new_tat - now) * 1000))
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ttl)
  return {1, math.floor((span - new_tat + now + eps) / interval), math.ceil(new_tat - eps), 0}
end
return {0, 0, math.ceil(tat - eps), math.max(1, math.ceil(new_tat - span - now - eps))}
"""

_REFUND = """
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then return 0 end
redis.call('SET', KEYS[1], string.format('%.17g', tat - tonumber(ARGV[1])), 'KEEPTTL')
return 1
"""


class RedisRateLimiter(RateLimitBackend):
    """Buckets under ``{prefix}rl:{key}``; ``clock`` (epoch s) replaces Redis TIME in tests."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "nexus:",
        clock: Callable[[], float] | None = None,
        owns_client: bool = True,
    ) -> None:
        self._client = client
        self._prefix = prefix + "rl:"
        self._clock = clock
        self._owns_client = owns_client
        self._hit = client.register_script(_HIT)
        self._refund = client.register_script(_REFUND)
        self._guard = Guard("Redis (rate limits)")

    async def hit(self, key: str, limit: int, burst: int | None = None) -> RateLimitDecision:
        if limit < 1 or (burst is not None and burst < 1):
            raise ValueError(f"invalid rate limit {limit!r} / burst {burst!r}")
        interval = 60.0 / limit
        span = 60.0 if burst is None else burst * interval
        now: Any = "" if self._clock is None else repr(self._clock())
        with self._guard:
            allowed, remaining, reset, retry_after = await self._hit(
                keys=[self._prefix + key], args=[repr(interval), repr(span), now]
            )
        return RateLimitDecision(bool(allowed), limit, remaining, reset, retry_after)

    async def refund(self, key: str, limit: int, burst: int | None = None) -> None:
        with self._guard:
            await self._refund(keys=[self._prefix + key], args=[repr(60.0 / limit)])

    async def ping(self) -> None:
        with self._guard:
            await self._client.ping()

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
