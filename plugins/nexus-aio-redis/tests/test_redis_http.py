"""Two nexus_aio instances on different ports sharing one real Redis, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import nexus_aio_redis
import pytest
from nexus_aio_redis import RedisSessionStore

from nexus_aio.errors import ConfigurationError
from nexus_aio.testing import make_app, start_server

Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def instances(redis_server: Any) -> AsyncIterator[Start]:
    servers: list[Any] = []

    async def start(**settings: Any) -> str:
        app = make_app(redis_url=redis_server.url, **settings)
        server = await start_server(app)
        servers.append(server)
        return str(server.url)

    yield start
    for server in reversed(servers):
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _count(http: aiohttp.ClientSession, url: str, sid: str) -> Any:
    async with http.post(
        f"{url}/workflows/counter/execute", json={"inputs": {}}, headers={"X-Session-ID": sid}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["result"]


async def test_session_counter_continues_across_instances(
    instances: Start, http: aiohttp.ClientSession
) -> None:
    a, b = await instances(), await instances()
    assert [await _count(http, url, "cart") for url in (a, b, a, b)] == [1, 2, 3, 4]


async def test_concurrent_increments_split_across_instances_are_all_kept(
    instances: Start, http: aiohttp.ClientSession
) -> None:
    a, b = await instances(), await instances()
    results = await asyncio.gather(*(_count(http, (a, b)[i % 2], "hot") for i in range(20)))
    assert sorted(results) == list(range(1, 21))
    assert await _count(http, b, "hot") == 21


async def test_rate_limit_bucket_is_shared_by_instances(
    instances: Start, http: aiohttp.ClientSession
) -> None:
    a, b = (
        await instances(rate_limit=60, rate_limit_burst=3),
        await instances(rate_limit=60, rate_limit_burst=3),
    )
    statuses, remaining = [], []
    for url in (a, b, a, b):
        async with http.get(f"{url}/workflows") as resp:
            statuses.append(resp.status)
            remaining.append(resp.headers["X-RateLimit-Remaining"])
    assert statuses == [200, 200, 200, 429]
    assert remaining == ["2", "1", "0", "0"]


async def test_health_reports_redis_latency_and_plugins_lists_it(
    instances: Start, http: aiohttp.ClientSession
) -> None:
    a = await instances()
    async with http.get(f"{a}/health/detailed") as resp:
        body = await resp.json()
    component = body["components"]["redis"]
    assert component["status"] == "healthy"
    assert component["latency_ms"] >= 0
    async with http.get(f"{a}/plugins") as resp:
        names = [p["name"] for p in (await resp.json())["plugins"]]
    assert any("redis" in name for name in names)


async def test_redis_outage_gives_503_envelope_and_service_recovers(
    instances: Start, http: aiohttp.ClientSession, redis_server: Any
) -> None:
    a = await instances(redis_timeout=0.5)
    assert await _count(http, a, "s") == 1
    redis_server.stop()
    async with http.post(
        f"{a}/workflows/counter/execute", json={"inputs": {}}, headers={"X-Session-ID": "s"}
    ) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["success"] is False
    assert body["error"]["type"] == "StoreUnavailable"
    async with http.get(f"{a}/health/detailed") as resp:
        assert (await resp.json())["components"]["redis"]["status"] == "unhealthy"
    async with http.post(f"{a}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}}) as resp:
        assert resp.status == 503  # its record cannot be stored
        assert (await resp.json())["error"]["type"] == "StoreUnavailable"
    async with http.get(f"{a}/health") as resp:
        assert resp.status == 200  # the process itself is alive: no crash, no restart loop
    redis_server.start()  # a fresh, empty Redis: no restart of the instance needed
    assert await _count(http, a, "s") == 1
    assert await _count(http, a, "s") == 2


async def test_redis_settings_work_through_constructor_app_api_and_environment(
    redis_server: Any, http: aiohttp.ClientSession, nexus_server: Any, monkeypatch: Any
) -> None:
    by_api = make_app()
    by_api.api.redis_url = redis_server.url
    apps = [make_app(redis_url=redis_server.url), by_api]
    monkeypatch.setenv("NEXUS_REDIS_URL", redis_server.url)
    apps.append(make_app())
    monkeypatch.delenv("NEXUS_REDIS_URL")
    for app in apps:
        async with http.get(f"{await nexus_server(app)}/health/detailed") as resp:
            assert (await resp.json())["components"]["redis"]["status"] == "healthy"


def test_redis_settings_are_type_checked(monkeypatch: Any) -> None:
    with pytest.raises(ConfigurationError, match="redis_timeout must be a number"):
        make_app(redis_timeout="2")
    monkeypatch.setenv("NEXUS_REDIS_EXECUTE_ASYNC", "maybe")
    with pytest.raises(ConfigurationError, match="NEXUS_REDIS_EXECUTE_ASYNC='maybe'"):
        make_app()


def test_hooks_do_nothing_without_a_redis_url() -> None:
    app = make_app()
    assert nexus_aio_redis.storage_backend(app, "sessions") is None
    assert nexus_aio_redis.storage_backend(app, "ratelimit") is None
    assert nexus_aio_redis.health_components(app) is None


async def test_storage_backend_hook_builds_the_redis_stores(redis_server: Any) -> None:
    app = make_app(redis_url=redis_server.url, session_ttl=42)
    store = nexus_aio_redis.storage_backend(app, "sessions")
    limiter = nexus_aio_redis.storage_backend(app, "ratelimit")
    try:
        assert isinstance(store, RedisSessionStore)
        assert store.ttl == 42
        assert isinstance(limiter, nexus_aio_redis.RedisRateLimiter)
        await store.ping()
        await limiter.ping()
    finally:
        await store.close()
        await limiter.close()


async def test_idempotency_key_replays_on_the_other_instance(
    instances: Start, http: aiohttp.ClientSession
) -> None:
    a, b = await instances(), await instances()
    bodies = []
    for url in (a, b):
        async with http.post(
            f"{url}/workflows/counter/execute",
            json={"inputs": {}},
            headers={"X-Session-ID": "idem", "Idempotency-Key": "order-7"},
        ) as resp:
            assert resp.status == 200
            bodies.append(await resp.json())
    assert bodies[0]["workflow_id"] == bodies[1]["workflow_id"]
    assert [body["result"] for body in bodies] == [1, 1]  # ran once
    assert await _count(http, b, "idem") == 2


async def test_execution_submitted_on_a_is_read_and_listed_on_b(
    instances: Start, http: aiohttp.ClientSession
) -> None:
    a, b = await instances(), await instances()
    async with http.post(f"{a}/workflows/sum/execute", json={"inputs": {"a": 2, "b": 3}}) as resp:
        execution_id = (await resp.json())["workflow_id"]
    async with http.get(f"{b}/executions/{execution_id}") as resp:
        assert resp.status == 200
        record = await resp.json()
    assert (record["status"], record["result"], record["inputs"]) == (
        "succeeded",
        5,
        {"a": 2, "b": 3},
    )
    async with http.get(f"{b}/executions", params={"workflow": "sum"}) as resp:
        listed = await resp.json()
    assert execution_id in str(listed)
