"""Batch items run through the same runtime as single executions: a retry policy applies."""

from __future__ import annotations

from collections import Counter

import aiohttp

from nexus_aio import RetryPolicy
from nexus_aio.testing import make_app


async def test_each_batch_item_is_retried_by_its_workflows_policy(nexus_server):
    app = make_app()
    calls: Counter[str] = Counter()

    @app.workflow(retry=RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=False))
    async def flaky(key: str) -> str:
        calls[key] += 1
        if calls[key] < 3:
            raise ConnectionError(f"{key} down")
        return key

    url = await nexus_server(app)
    items = [{"name": "flaky", "inputs": {"key": key}} for key in ("a", "b")]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/workflows/batch", json={"workflows": items}) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["success"] is True
        assert [r["result"] for r in body["results"]] == ["a", "b"]
        assert calls == {"a": 3, "b": 3}
        for result in body["results"]:
            async with http.get(f"{url}/executions/{result['workflow_id']}") as resp:
                assert (await resp.json())["attempts"] == 3
