"""Schedules in a real Redis: the core's schedule store contract, then two instances sharing it
(each tick fired once)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from nexus_aio_redis.client import connect
from nexus_aio_redis.schedules import RedisScheduleStore

from nexus_aio.testing import ScheduleStoreContract, make_app, opened, start_server


class TestRedisScheduleStore(ScheduleStoreContract):
    @pytest.fixture
    async def store(self, redis_server: Any) -> AsyncIterator[Any]:
        async with opened(RedisScheduleStore(connect(redis_server.url, timeout=1.0))) as store:
            yield store


async def test_two_instances_on_redis_fire_each_tick_once(redis_server: Any) -> None:
    servers = [await start_server(make_app(redis_url=redis_server.url)) for _ in range(2)]
    try:
        async with aiohttp.ClientSession() as http:
            body = {"workflow": "sum", "inputs": {"a": 1, "b": 2}, "every": 1}
            async with http.post(f"{servers[0].url}/schedules", json=body) as resp:
                assert resp.status == 201, await resp.text()
                schedule_id = (await resp.json())["id"]
            async with http.get(f"{servers[1].url}/schedules/{schedule_id}") as resp:
                assert resp.status == 200  # one store: the other instance sees it too
            deadline = time.monotonic() + 30
            while True:
                async with http.get(f"{servers[1].url}/executions?limit=500") as resp:
                    page = await resp.json()
                runs = [r for r in page["executions"] if r.get("schedule_id") == schedule_id]
                if len(runs) >= 5:
                    break
                assert time.monotonic() < deadline, f"{len(runs)} runs"
                await asyncio.sleep(0.1)
    finally:
        for server in servers:
            await server.stop()
    created = sorted(
        datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp() for r in runs
    )
    gaps = [b - a for a, b in itertools.pairwise(created)]
    assert min(gaps) > 0.5, gaps  # a tick fired by both instances would be ms apart
    assert {r["trigger"] for r in runs} == {"schedule"}
