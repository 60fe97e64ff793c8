"""The webhook outbox in Redis, shared by every instance using the same Redis.

A delivery is a hash ``{prefix}wh:{id}``. Sorted sets index it: ``wh:waiting`` (runs not ended,
by creation), ``wh:due`` (pending, by due time) and ``wh:final`` (delivered or failed, by
creation, for the purge). A claim moves a due delivery's score forward by the lease in the same
Lua script that picks it, so two instances never take one attempt; a claimant that dies leaves
it due again when the lease runs out.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis

from nexus_aio.stores.webhooks import FINAL_STATES, Delivery, WebhookOutbox
from nexus_aio_redis.client import Guard


def _hash(reply: Any) -> Awaitable[dict[bytes, bytes]]:
    """redis-py types hash replies as "awaitable or not" for its sync and async clients alike."""
    return cast("Awaitable[dict[bytes, bytes]]", reply)


__all__ = ["RedisWebhookOutbox"]

_FIELDS = (
    "url",
    "created_at",
    "state",
    "attempts",
    "next_at",
    "last_status",
    "last_error",
    "delivered_at",
)

# KEYS: hash, waiting, due, final; ARGV: id, now
_READY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'waiting' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'next_at', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""
# KEYS: due; ARGV: now, limit, leased score
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _decode(execution_id: str, raw: dict[bytes, bytes]) -> Delivery:
    data = {k.decode(): v.decode() for k, v in raw.items()}

    def num(name: str, kind: type = float) -> Any:
        value = data.get(name, "")
        return kind(value) if value != "" else None

    return Delivery(
        execution_id=execution_id,
        url=data["url"],
        created_at=float(data["created_at"]),
        state=data["state"],
        attempts=int(data.get("attempts") or 0),
        next_at=num("next_at"),
        last_status=num("last_status", int),
        last_error=data.get("last_error") or None,
        delivered_at=num("delivered_at"),
    )


class RedisWebhookOutbox(WebhookOutbox):
    def __init__(self, client: aioredis.Redis, *, prefix: str = "nexus:") -> None:
        self._client = client
        self._prefix = prefix + "wh:"
        self._waiting = self._prefix + "waiting"
        self._due = self._prefix + "due"
        self._final = self._prefix + "final"
        self._ready = client.register_script(_READY)
        self._claim = client.register_script(_CLAIM)
        self._guard = Guard("Redis (webhook outbox)")

    def _key(self, execution_id: str) -> str:
        return self._prefix + "d:" + execution_id

    async def close(self) -> None:
        await self._client.aclose()

    async def add(self, delivery: Delivery) -> None:
        key = self._key(delivery.execution_id)
        mapping = {name: _text(getattr(delivery, name)) for name in _FIELDS}
        with self._guard:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=mapping)
                pipe.zrem(self._due, delivery.execution_id)
                pipe.zrem(self._final, delivery.execution_id)
                pipe.zadd(self._waiting, {delivery.execution_id: delivery.created_at})
                await pipe.execute()

    async def ready(self, execution_id: str, now: float) -> bool:
        keys = [self._key(execution_id), self._waiting, self._due, self._final]
        with self._guard:
            return bool(await self._ready(keys=keys, args=[execution_id, repr(now)]))

    async def waiting(self, limit: int) -> list[str]:
        with self._guard:
            ids = await self._client.zrange(self._waiting, 0, limit - 1)
        return [i.decode() for i in ids]

    async def claim(self, now: float, limit: int, lease: float) -> list[Delivery]:
        with self._guard:
            ids = await self._claim(keys=[self._due], args=[repr(now), limit, repr(now + lease)])
            out = []
            for raw_id in ids:
                execution_id = raw_id.decode()
                raw = await _hash(self._client.hgetall(self._key(execution_id)))
                if raw:
                    out.append(_decode(execution_id, raw))
                else:
                    await self._client.zrem(self._due, execution_id)
        return out

    async def attempted(self, delivery: Delivery) -> None:
        key = self._key(delivery.execution_id)
        mapping = {name: _text(getattr(delivery, name)) for name in _FIELDS}
        with self._guard:
            if not await self._client.exists(key):
                return
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=mapping)
                if delivery.state in FINAL_STATES:
                    pipe.zrem(self._due, delivery.execution_id)
                    pipe.zrem(self._waiting, delivery.execution_id)
                    pipe.zadd(self._final, {delivery.execution_id: delivery.created_at})
                elif delivery.state == "pending" and delivery.next_at is not None:
                    pipe.zadd(self._due, {delivery.execution_id: delivery.next_at})
                await pipe.execute()

    async def get(self, execution_id: str) -> Delivery | None:
        with self._guard:
            raw = await _hash(self._client.hgetall(self._key(execution_id)))
        return _decode(execution_id, raw) if raw else None

    async def purge(self, finished_before: float) -> int:
        with self._guard:
            ids = await self._client.zrangebyscore(self._final, "-inf", finished_before)
            if not ids:
                return 0
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(*(self._key(i.decode()) for i in ids))
                pipe.zrem(self._final, *ids)
                await pipe.execute()
        return len(ids)
