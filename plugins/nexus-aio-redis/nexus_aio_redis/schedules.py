"""Schedules in Redis, shared by every instance using the same Redis.

Each schedule is a hash ``{prefix}sched:s:{id}``: its definition as JSON (field ``def``) and the
fields a tick changes (``next_run``, ``paused``, ``last_run``, ``last_execution_id``,
``last_error``) as strings. The sorted set ``sched:due`` holds the active ones by ``next_run``,
``sched:all`` every one by creation time. The claim of a tick is a Lua compare-and-set on the
stored ``next_run`` text, so of the instances that see a tick due exactly one fires it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from nexus_aio.stores.schedules import Schedule, ScheduleStore
from nexus_aio_redis.client import Guard


def _hash(reply: Any) -> Awaitable[dict[bytes, bytes]]:
    """redis-py types hash replies as "awaitable or not" for its sync and async clients alike."""
    return cast("Awaitable[dict[bytes, bytes]]", reply)


def _done(reply: Any) -> Awaitable[Any]:
    return cast("Awaitable[Any]", reply)


__all__ = ["RedisScheduleStore"]

_STATE = ("next_run", "paused", "last_run", "last_execution_id", "last_error")

# KEYS: schedule, due; ARGV: id, expected, next_run, fired ('' for none)
_ADVANCE = """
if redis.call('HGET', KEYS[1], 'paused') ~= '0' then return 0 end
if redis.call('HGET', KEYS[1], 'next_run') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'next_run', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_run', ARGV[4]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value) if isinstance(value, float) else str(value)


def _encode(schedule: Schedule) -> dict[str, str]:
    data = dataclasses.asdict(schedule)
    state = {name: _text(data.pop(name)) for name in _STATE}
    return {"def": orjson.dumps(data).decode(), **state}


def _decode(raw: dict[bytes, bytes]) -> Schedule:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    data: dict[str, Any] = orjson.loads(fields["def"])
    data["next_run"] = float(fields["next_run"])
    data["paused"] = fields["paused"] == "1"
    data["last_run"] = float(fields["last_run"]) if fields.get("last_run") else None
    data["last_execution_id"] = fields.get("last_execution_id") or None
    data["last_error"] = fields.get("last_error") or None
    return Schedule(**data)


class RedisScheduleStore(ScheduleStore):
    def __init__(self, client: aioredis.Redis, *, prefix: str = "nexus:") -> None:
        self._client = client
        self._prefix = prefix + "sched:"
        self._due = self._prefix + "due"
        self._all = self._prefix + "all"
        self._advance = client.register_script(_ADVANCE)
        self._guard = Guard("Redis (schedules)")

    def _key(self, schedule_id: str) -> str:
        return self._prefix + "s:" + schedule_id

    async def close(self) -> None:
        await self._client.aclose()

    async def put(self, schedule: Schedule) -> None:
        with self._guard:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(schedule.id))
                pipe.hset(self._key(schedule.id), mapping=_encode(schedule))
                pipe.zadd(self._all, {schedule.id: schedule.created_at})
                if schedule.paused:
                    pipe.zrem(self._due, schedule.id)
                else:
                    pipe.zadd(self._due, {schedule.id: schedule.next_run})
                await pipe.execute()

    async def get(self, schedule_id: str) -> Schedule | None:
        with self._guard:
            raw = await _hash(self._client.hgetall(self._key(schedule_id)))
        return _decode(raw) if raw else None

    async def _many(self, ids: list[bytes]) -> list[Schedule]:
        if not ids:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self._key(i.decode()))
            raws = await pipe.execute()
        return [_decode(raw) for raw in raws if raw]

    async def all(self) -> list[Schedule]:
        with self._guard:
            return await self._many(await self._client.zrange(self._all, 0, -1))

    async def count(self) -> int:
        with self._guard:
            return int(await self._client.zcard(self._all))

    async def delete(self, schedule_id: str) -> bool:
        with self._guard:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(schedule_id))
                pipe.zrem(self._all, schedule_id)
                pipe.zrem(self._due, schedule_id)
                deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def due(self, now: float, limit: int) -> list[Schedule]:
        with self._guard:
            ids = await self._client.zrangebyscore(self._due, "-inf", now, start=0, num=limit)
            found = await self._many(ids)
        return [s for s in found if not s.paused and s.next_run <= now]

    async def next_due(self) -> float | None:
        with self._guard:
            first = await self._client.zrange(self._due, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def advance(
        self, schedule_id: str, expected: float, next_run: float, fired: float | None
    ) -> bool:
        keys = [self._key(schedule_id), self._due]
        args = [schedule_id, repr(expected), repr(next_run), "" if fired is None else repr(fired)]
        with self._guard:
            return bool(await self._advance(keys=keys, args=args))

    async def note_run(self, schedule_id: str, execution_id: str | None, error: str | None) -> None:
        key = self._key(schedule_id)
        with self._guard:
            if await self._client.exists(key):
                mapping = {"last_execution_id": execution_id or "", "last_error": error or ""}
                await _done(self._client.hset(key, mapping=mapping))
