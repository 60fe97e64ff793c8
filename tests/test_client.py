"""``NexusClient`` and ``AsyncNexusClient`` against live servers: every method, typed errors,
retries through a real 429 and a real 503, connection-error retries, and no retry of a POST
without an Idempotency-Key."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import nexus_aio
from nexus_aio.client import (
    AsyncNexusClient,
    Event,
    NexusClient,
    NexusError,
    NotFound,
    RateLimitExceeded,
    RetryPolicy,
    ServiceUnavailable,
    ValidationError,
    WorkflowExecutionError,
    WorkflowNotFound,
    error_from_response,
)
from nexus_aio.testing import free_port, make_app, plugin_installed, start_server


def app_with_limited(**settings: Any) -> nexus_aio.Nexus:
    app = make_app(**settings)

    async def limited(x: int = 1) -> int:
        return x

    # 600/min with a burst of 1: the second immediate call is refused with Retry-After: 1.
    app.register("limited", limited, rate_limit=600, rate_limit_burst=1)
    return app


class RecordingSleep:
    """Records the delays the client asks for; really waits only ``cap`` seconds (enough for the
    server-side condition to clear) so the tests stay fast."""

    def __init__(self, cap: float = 0.3) -> None:
        self.delays: list[float] = []
        self.cap = cap

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(min(seconds, self.cap))

    async def async_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(min(seconds, self.cap))


# -- sync client ---------------------------------------------------------------------------------
def test_sync_client_every_method(nexus_thread_server):
    url = nexus_thread_server(make_app())
    with NexusClient(url) as client:
        assert client.execute("sum", {"a": 2, "b": 3}) == 5
        envelope = client.execute_workflow("greet", {"name": "Ada"})
        assert envelope["success"] is True and envelope["workflow_id"].startswith("wf-")
        assert envelope["result"] == {"message": "Hello, Ada!"}
        assert client.execute("counter", {}, session_id="s-1") == 1
        assert client.execute("counter", {"step": 2}, session_id="s-1") == 3
        assert client.get_session("s-1")["state"] == {"count": 3}
        events = list(client.stream("countdown", {"start": 3}))
        assert all(isinstance(e, Event) for e in events)
        assert events[0].event == "start" and events[-1].event == "complete"
        assert [e.data for e in events if e.event == "chunk"] == [3, 2, 1]
        assert [e.id for e in events] == sorted(e.id for e in events if e.id is not None)
        execution_id = client.submit("slow", {"seconds": 0.05})
        record = client.wait(execution_id, timeout=10)
        assert record["status"] == "succeeded" and record["result"] == {"slept": 0.05}
        envelopes = client.execute_many(
            [
                {"name": "sum", "inputs": {"a": 1, "b": 1}},
                {"name": "echo", "inputs": {"param": "p"}},
            ]
        )
        assert [e["result"] for e in envelopes] == [2, {"param": "p"}]
        if plugin_installed("batch"):
            batch = client.batch([{"name": "sum", "inputs": {"a": 4, "b": 4}}])
            assert batch["results"][0]["result"] == 8
        else:
            with pytest.raises(NotFound):
                client.batch([{"name": "sum", "inputs": {"a": 4, "b": 4}}])
        assert client.get_schema("sum")["inputs"]["a"] == {"type": "integer", "required": True}
        assert "greet" in client.list_workflows()
        assert client.health()["status"] == "healthy"
        assert client.health(detailed=True)["status"] in ("healthy", "degraded", "unhealthy")


def test_sync_client_raises_typed_errors_with_request_id(nexus_thread_server):
    url = nexus_thread_server(make_app())
    with NexusClient(url, headers={"X-Request-ID": "req-client-1"}) as client:
        with pytest.raises(ValidationError) as caught:
            client.execute("sum", {"a": "one", "b": 2})
        err = caught.value
        assert (err.status, err.type, err.request_id) == (400, "ValidationError", "req-client-1")
        assert err.details["field"] == "a"
        assert "a" in err.message
        with pytest.raises(WorkflowNotFound) as missing:
            client.execute("nope", {})
        assert missing.value.status == 404
        with pytest.raises(WorkflowExecutionError) as failed:
            client.execute("fail", {"message": "boom"})
        assert failed.value.message == "boom" and failed.value.status == 500
    assert nexus_aio.NexusError is NexusError and isinstance(failed.value, nexus_aio.NexusError)


def test_sync_execute_retries_through_a_real_429_honouring_retry_after(nexus_thread_server):
    url = nexus_thread_server(app_with_limited())
    sleep = RecordingSleep()
    with NexusClient(url, sleep=sleep) as client:
        assert client.execute("limited", {"x": 1}) == 1
        assert client.rate_limit is not None and client.rate_limit.limit == 600
        assert client.execute("limited", {"x": 2}) == 2  # refused once, then retried
    assert len(sleep.delays) >= 1 and sleep.delays[0] >= 1.0  # Retry-After: 1


def test_sync_post_without_idempotency_key_is_not_retried(nexus_thread_server):
    url = nexus_thread_server(app_with_limited())
    sleep = RecordingSleep()
    with NexusClient(url, sleep=sleep) as client:
        client.execute("limited", {})
        with pytest.raises(RateLimitExceeded) as caught:
            client.request("POST", "/workflows/limited/execute", json={"inputs": {}})
        assert caught.value.status == 429 and caught.value.headers["Retry-After"]
    assert sleep.delays == []


def test_sync_client_retries_a_real_503_when_the_server_is_at_capacity(nexus_thread_server):
    url = nexus_thread_server(make_app(max_concurrent_requests=1))
    sleep = RecordingSleep(cap=0.5)
    with NexusClient(url, sleep=sleep) as client:
        running = client.submit("slow", {"seconds": 0.3})
        assert client.execute("sum", {"a": 1, "b": 1}) == 2
        assert client.wait(running, timeout=10)["status"] == "succeeded"
    assert sleep.delays and sleep.delays[0] >= 1.0  # Retry-After: 1 on the 503


def test_sync_connection_errors_are_retried_then_reported():
    sleep = RecordingSleep(cap=0)
    client = NexusClient(
        f"http://127.0.0.1:{free_port()}", sleep=sleep, retry=RetryPolicy(max_retries=2)
    )
    with client, pytest.raises(ServiceUnavailable):
        client.health()
    assert len(sleep.delays) == 2


# -- async client --------------------------------------------------------------------------------
async def test_async_client_every_method(nexus_server):
    url = await nexus_server(make_app())
    async with AsyncNexusClient(url) as client:
        assert await client.execute("sum", {"a": 2, "b": 3}) == 5
        envelope = await client.execute_workflow("echo", {"param": "x"})
        assert envelope["result"] == {"param": "x"}
        assert await client.execute("counter", {}, session_id="a-1") == 1
        events = [e async for e in client.stream("countdown", {"start": 2})]
        assert events[0].event == "start" and events[-1].event == "complete"
        assert [e.data for e in events if e.event == "chunk"] == [2, 1]
        execution_id = await client.submit("slow", {"seconds": 0.05})
        record = await client.wait(execution_id, timeout=10)
        assert record["status"] == "succeeded"
        replay = [e async for e in client.follow(execution_id)]
        assert replay[-1].event == "complete"
        if plugin_installed("batch"):
            batch = await client.batch([{"name": "sum", "inputs": {"a": 1, "b": 2}}])
            assert batch["succeeded"] == 1
        else:
            with pytest.raises(NotFound):
                await client.batch([{"name": "sum", "inputs": {"a": 1, "b": 2}}])
        assert (await client.get_schema("greet"))["inputs"]["name"]["required"] is True
        assert "sum" in await client.list_workflows()
        assert (await client.health())["status"] == "healthy"
        with pytest.raises(WorkflowNotFound):
            await client.execute("missing", {})


async def test_async_execute_many_runs_concurrently(nexus_server):
    app = make_app()
    barrier = asyncio.Barrier(3)

    async def meet(tag: str) -> str:
        """Finishes only when three calls are inside it at once."""
        async with asyncio.timeout(5):
            await barrier.wait()
        return tag

    app.register("meet", meet)
    url = await nexus_server(app)
    async with AsyncNexusClient(url) as client:
        results = await client.execute_many([{"name": "meet", "inputs": {"tag": t}} for t in "abc"])
        assert [r["result"] for r in results] == ["a", "b", "c"]
        mixed = await client.execute_many(
            [{"name": "sum", "inputs": {"a": 1, "b": 1}}, {"name": "sum", "inputs": {}}],
            return_exceptions=True,
        )
        assert mixed[0]["result"] == 2 and isinstance(mixed[1], ValidationError)


async def test_async_execute_retries_through_a_real_429(nexus_server):
    url = await nexus_server(app_with_limited())
    sleep = RecordingSleep()
    async with AsyncNexusClient(url, sleep=sleep.async_sleep) as client:
        assert await client.execute("limited", {"x": 1}) == 1
        assert await client.execute("limited", {"x": 2}) == 2
        assert client.rate_limit is not None and client.rate_limit.limit == 600
        with pytest.raises(RateLimitExceeded):  # no key: refused once, not retried
            response = await client.request(
                "POST", "/workflows/limited/execute", json={"inputs": {}}
            )
            response.release()
    assert len(sleep.delays) == 1 and sleep.delays[0] >= 1.0


async def test_async_connection_error_is_retried_until_the_server_comes_up():
    port = free_port()
    servers = []

    async def sleep_then_start(seconds: float) -> None:
        if not servers:
            servers.append(await start_server(make_app(), port=port))

    client = AsyncNexusClient(f"http://127.0.0.1:{port}", sleep=sleep_then_start)
    try:
        assert await client.execute("sum", {"a": 20, "b": 22}) == 42  # POST with its own key
    finally:
        await client.aclose()
        for server in servers:
            await server.stop()
    assert len(servers) == 1


async def test_async_post_without_key_is_not_retried_on_connection_error():
    calls: list[float] = []

    async def sleep(seconds: float) -> None:
        calls.append(seconds)

    async with AsyncNexusClient(f"http://127.0.0.1:{free_port()}", sleep=sleep) as client:
        with pytest.raises(ServiceUnavailable):
            await client.request("POST", "/workflows/sum/execute", json={"inputs": {}})
    assert calls == []


# -- units ---------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_is_jittered_and_honours_retry_after():
    policy = RetryPolicy(base=0.5, max_delay=10)
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.delay(10, rand=lambda: 1.0) == 10
    assert policy.delay(3, rand=lambda: 0.25) == 1.0
    assert policy.delay(0, "7", rand=lambda: 0.0) == 7.0
    assert policy.delay(0, "999", rand=lambda: 0.0) == 10


def test_error_from_response_maps_type_then_status():
    body = {"success": False, "error": {"type": "SessionNotFound", "message": "m", "details": {}}}
    err = error_from_response(404, body, "req-1")
    assert type(err).__name__ == "SessionNotFound" and err.request_id == "req-1"
    odd = error_from_response(418, {"error": {"type": "Teapot", "message": "short"}})
    assert (odd.status, odd.type, odd.message) == (418, "Teapot", "short")
    assert isinstance(error_from_response(503, "not json"), ServiceUnavailable)
