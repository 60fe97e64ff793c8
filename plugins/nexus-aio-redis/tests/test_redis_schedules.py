"""Schedules in a real Redis: the core's schedule store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from nexus_aio_redis.client import connect
from nexus_aio_redis.schedules import RedisScheduleStore

from nexus_aio.testing import ScheduleStoreContract, opened


class TestRedisScheduleStore(ScheduleStoreContract):
    @pytest.fixture
    async def store(self, redis_server: Any) -> AsyncIterator[Any]:
        async with opened(RedisScheduleStore(connect(redis_server.url, timeout=1.0))) as store:
            yield store
