"""The webhook outbox in a real Redis: the core's outbox contract, then two instances sharing it
(each run delivered exactly once)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nexus_aio_redis.client import connect
from nexus_aio_redis.webhooks import RedisWebhookOutbox

from nexus_aio.testing import (
    WebhookOutboxContract,
    http_receiver,
    make_app,
    opened,
    start_server,
)

SECRET = "whsec_" + base64.b64encode(b"r" * 32).decode()


class TestRedisWebhookOutbox(WebhookOutboxContract):
    @pytest.fixture
    async def store(self, redis_server: Any) -> AsyncIterator[Any]:
        async with opened(RedisWebhookOutbox(connect(redis_server.url, timeout=1.0))) as store:
            yield store


async def test_two_instances_on_redis_deliver_each_run_once(redis_server: Any) -> None:
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(request.headers["webhook-id"])
        return web.Response()

    async with http_receiver(hook) as hook_url:
        settings = {
            "redis_url": redis_server.url,
            "webhook_secret": SECRET,
            "webhook_allowed_hosts": ["127.0.0.1"],
        }
        servers = [await start_server(make_app(**settings)) for _ in range(2)]
        try:
            ids = []
            async with aiohttp.ClientSession() as http:
                for i in range(20):
                    url = servers[i % 2].url
                    body = {"inputs": {"a": i, "b": 0}, "mode": "async", "webhook": hook_url}
                    async with http.post(f"{url}/workflows/sum/execute", json=body) as resp:
                        assert resp.status == 202, await resp.text()
                        ids.append((await resp.json())["workflow_id"])
                deadline = time.monotonic() + 20
                for execution_id in ids:
                    while True:
                        async with http.get(f"{servers[0].url}/executions/{execution_id}") as resp:
                            state = (await resp.json()).get("webhook", {}).get("state")
                        if state == "delivered":
                            break
                        assert time.monotonic() < deadline, (execution_id, state)
                        await asyncio.sleep(0.05)
            assert sorted(received) == sorted(f"msg_{i}" for i in ids)
        finally:
            for server in servers:
                await server.stop()
