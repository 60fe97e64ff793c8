"""Memory stays bounded with the Redis stores too: list pages and the number of sessions."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import orjson

from nexus_aio.testing import make_app, start_server

MB = 1024 * 1024


async def test_redis_list_pages_leave_huge_values_out_and_records_stay_whole(
    redis_server: Any,
) -> None:
    server = await start_server(make_app(redis_url=redis_server.url))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            ids = []
            for n in range(5):
                body = io.BytesIO(orjson.dumps({"inputs": {"param": f"{n}" + "x" * MB}}))
                async with http.post(
                    f"{server.url}/workflows/echo/execute",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    ids.append((await resp.json())["workflow_id"])
            async with http.get(f"{server.url}/executions", params={"limit": 50}) as resp:
                assert resp.status == 200
                raw = await resp.read()
            assert len(raw) < 10 * 1024
            items = orjson.loads(raw)["executions"]
            assert sorted(i["id"] for i in items) == sorted(ids)
            assert all(i["truncated"] == ["inputs", "result"] for i in items)
            async with http.get(f"{server.url}/executions/{ids[2]}") as resp:
                record = await resp.json()
            assert record["inputs"]["param"] == "2" + "x" * MB
            assert "truncated" not in record
    finally:
        await server.stop()


async def test_redis_session_store_refuses_a_session_beyond_max_sessions(
    redis_server: Any,
) -> None:
    server = await start_server(make_app(redis_url=redis_server.url, max_sessions=2))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def step(sid: str) -> tuple[int, Any, str]:
                async with http.post(
                    f"{server.url}/workflows/counter/execute",
                    json={"inputs": {}},
                    headers={"X-Session-ID": sid},
                ) as resp:
                    return resp.status, await resp.json(), resp.headers.get("Retry-After", "")

            assert (await step("a"))[0] == 200
            assert (await step("b"))[0] == 200
            status, body, retry_after = await step("c")
            assert status == 503 and int(retry_after) > 0
            assert body["error"]["type"] == "ServiceUnavailable"
            assert body["error"]["details"] == {"max_sessions": 2}
            assert (await step("a"))[0] == 200
    finally:
        await server.stop()
