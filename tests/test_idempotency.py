"""``Idempotency-Key`` on execute over real HTTP: replay, conflicts, scoping, concurrency, modes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from nexus_aio import Nexus, hookimpl
from nexus_aio.testing import make_app

KEY = "Idempotency-Key"


class HeaderActor:
    """Test plugin: the actor is the ``X-Test-Actor`` header."""

    __name__ = "header_actor"

    @hookimpl
    def actor_from_request(self, nexus: Any, request: Any) -> Any:
        name = request.headers.get("X-Test-Actor")
        return {"id": name} if name else None


def counting_app(**settings: Any) -> tuple[Nexus, list[int], asyncio.Event, asyncio.Event]:
    """An app whose workflows record each real run; ``hold`` sets ``holding`` and waits for
    ``gate``."""
    settings.setdefault("load_entry_points", False)
    app = make_app(**settings)
    runs: list[int] = []
    gate = asyncio.Event()
    holding = asyncio.Event()

    @app.workflow("count")
    async def count(n: int) -> dict:
        runs.append(n)
        return {"n": n, "run": len(runs)}

    @app.workflow("hold")
    async def hold(n: int) -> dict:
        runs.append(n)
        holding.set()
        await gate.wait()
        return {"n": n}

    @app.workflow("broken")
    async def broken(n: int) -> None:
        runs.append(n)
        raise RuntimeError("broken")

    return app, runs, gate, holding


async def post(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    body: Any,
    key: str | None = "k-1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    all_headers = dict(headers or {})
    if key is not None:
        all_headers[KEY] = key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(
        f"{url}/workflows/{name}/execute",
        data=data,
        headers={"Content-Type": "application/json", **all_headers},
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_same_key_and_body_replays_the_original_response_without_running(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    status, headers, body = await post(http, url, "count", {"inputs": {"n": 1}})
    assert status == 200 and "Idempotent-Replayed" not in headers
    status2, headers2, body2 = await post(http, url, "count", {"inputs": {"n": 1}})
    assert status2 == 200 and headers2["Idempotent-Replayed"] == "true"
    assert body2 == body  # byte for byte: same workflow_id, result and timestamp
    assert runs == [1]


async def test_key_order_and_whitespace_do_not_make_a_different_request(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    await post(http, url, "count", b'{"inputs": {"n": 2}, "mode": "sync"}')
    status, headers, _ = await post(http, url, "count", b'{"mode":"sync","inputs":{"n":2}}')
    assert status == 200 and headers["Idempotent-Replayed"] == "true"
    assert runs == [2]


async def test_same_key_with_a_different_body_is_422(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    await post(http, url, "count", {"inputs": {"n": 1}})
    status, _, body = await post(http, url, "count", {"inputs": {"n": 2}})
    error = json.loads(body)["error"]
    assert status == 422 and error["type"] == "IdempotencyConflict"
    status, _, _ = await post(http, url, "count", {"inputs": {"n": 1}, "mode": "async"})
    assert status == 422
    assert runs == [1]


async def test_keys_are_scoped_to_the_caller(nexus_server, http):
    app, runs, *_ = counting_app(plugins=[HeaderActor()])
    url = await nexus_server(app)
    alice, bob = {"X-Test-Actor": "alice"}, {"X-Test-Actor": "bob"}
    _, _, first = await post(http, url, "count", {"inputs": {"n": 1}}, headers=alice)
    _, headers, second = await post(http, url, "count", {"inputs": {"n": 1}}, headers=bob)
    assert "Idempotent-Replayed" not in headers and first != second
    status, _, _ = await post(http, url, "count", {"inputs": {"n": 9}}, headers=bob)
    assert status == 422  # bob's own key now holds bob's request
    _, headers, again = await post(http, url, "count", {"inputs": {"n": 1}}, headers=alice)
    assert headers["Idempotent-Replayed"] == "true" and again == first
    assert runs == [1, 1]


async def test_concurrent_duplicates_run_once_and_answer_the_same(nexus_server, http):
    app, runs, gate, holding = counting_app()
    url = await nexus_server(app)
    calls = [asyncio.create_task(post(http, url, "hold", {"inputs": {"n": 5}})) for _ in range(3)]
    async with asyncio.timeout(5):
        await holding.wait()
    await asyncio.sleep(0.05)  # give the duplicates every chance to (wrongly) start a run
    gate.set()
    results = await asyncio.gather(*calls)
    assert runs == [5]
    assert {body for _, _, body in results} == {results[0][2]}
    assert sorted("Idempotent-Replayed" in headers for _, headers, _ in results) == [
        False,
        True,
        True,
    ]


async def test_async_mode_replays_the_original_202_with_its_location(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    status, headers, body = await post(http, url, "count", {"inputs": {"n": 3}, "mode": "async"})
    assert status == 202
    status2, headers2, body2 = await post(http, url, "count", {"inputs": {"n": 3}, "mode": "async"})
    assert status2 == 202 and body2 == body
    assert headers2["Location"] == headers["Location"]
    assert headers2["Idempotent-Replayed"] == "true"
    execution_id = json.loads(body)["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}?wait=5") as resp:
        assert (await resp.json())["result"] == {"n": 3, "run": 1}
    assert runs == [3]


async def test_a_workflow_failure_is_replayed_but_a_rejected_request_is_not(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    status, _, body = await post(http, url, "broken", {"inputs": {"n": 1}}, key="fail-key")
    status2, headers2, body2 = await post(http, url, "broken", {"inputs": {"n": 1}}, key="fail-key")
    assert status == status2 == 500 and body2 == body
    assert headers2["Idempotent-Replayed"] == "true" and runs == [1]
    for _ in range(2):  # a 400 is the caller's mistake: not remembered, answered afresh
        status, headers, _ = await post(http, url, "count", {"inputs": {"n": "x"}}, key="bad")
        assert status == 400 and "Idempotent-Replayed" not in headers
    status, _, _ = await post(http, url, "count", {"inputs": {"n": 4}}, key="bad")
    assert status == 200 and runs == [1, 4]


async def test_stream_mode_replays_the_stored_events(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    _, headers, first = await post(http, url, "count", {"inputs": {"n": 7}, "mode": "stream"})
    assert headers["Content-Type"].startswith("text/event-stream")
    _, headers2, second = await post(http, url, "count", {"inputs": {"n": 7}, "mode": "stream"})
    assert headers2["Idempotent-Replayed"] == "true"
    assert headers2["Content-Type"].startswith("text/event-stream")
    assert second == first and b"event: complete" in second
    assert runs == [7]


async def test_a_zero_ttl_forgets_keys_at_once(nexus_server, http):
    app, runs, *_ = counting_app(idempotency_ttl=0)
    url = await nexus_server(app)
    await post(http, url, "count", {"inputs": {"n": 1}})
    _, headers, _ = await post(http, url, "count", {"inputs": {"n": 1}})
    assert "Idempotent-Replayed" not in headers and runs == [1, 1]


async def test_an_invalid_key_is_400(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    status, _, body = await post(http, url, "count", {"inputs": {"n": 1}}, key="x" * 256)
    assert status == 400
    assert json.loads(body)["error"]["details"]["field"] == "Idempotency-Key"
    assert runs == []


async def test_without_the_header_every_request_runs(nexus_server, http):
    app, runs, *_ = counting_app()
    url = await nexus_server(app)
    for _ in range(2):
        await post(http, url, "count", {"inputs": {"n": 1}}, key=None)
    assert runs == [1, 1]
