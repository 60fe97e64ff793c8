"""``Idempotency-Key`` tells the truth over real HTTP: the fingerprint covers the session and
the caller, a repeat of a request still in flight gets the original's answer (never a second
run), and a stream cancelled because its client left does not poison its key."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from nexus_aio import Context, Nexus
from nexus_aio.testing import make_app, read_sse

KEY = "Idempotency-Key"


def gated_app(**settings: Any) -> tuple[Nexus, list[int], asyncio.Event, asyncio.Event]:
    """``hold`` records each real run, emits a first event, sets ``holding`` and waits for
    ``gate``; ``count`` records and answers at once."""
    settings.setdefault("load_entry_points", False)
    app = make_app(**settings)
    runs: list[int] = []
    gate = asyncio.Event()
    holding = asyncio.Event()

    @app.workflow("hold")
    async def hold(n: int, ctx: Context) -> dict:
        runs.append(n)
        ctx.progress(0.5, "halfway")
        holding.set()
        await gate.wait()
        return {"n": n, "run": len(runs)}

    @app.workflow("count")
    async def count(n: int, ctx: Context) -> dict:
        runs.append(n)
        ctx.session["seen"] = n
        return {"n": n, "run": len(runs)}

    return app, runs, gate, holding


async def post(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    body: Any,
    key: str = "k-1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(
        f"{url}/workflows/{name}/execute",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", KEY: key, **(headers or {})},
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_same_key_with_another_session_is_422(nexus_server, http):
    app, runs, *_ = gated_app()
    url = await nexus_server(app)
    status, _, _ = await post(
        http, url, "count", {"inputs": {"n": 1}}, headers={"X-Session-ID": "a"}
    )
    assert status == 200
    for other in ({"headers": {"X-Session-ID": "b"}}, {"headers": {}}):
        status, _, body = await post(http, url, "count", {"inputs": {"n": 1}}, **other)
        assert status == 422 and json.loads(body)["error"]["type"] == "IdempotencyConflict"
    # the session named in the body counts as well
    status, _, _ = await post(
        http, url, "count", {"inputs": {"n": 2}, "session_id": "a"}, key="k-2"
    )
    assert status == 200
    status, _, body = await post(
        http, url, "count", {"inputs": {"n": 2}, "session_id": "b"}, key="k-2"
    )
    assert status == 422 and json.loads(body)["error"]["type"] == "IdempotencyConflict"
    status, headers, _ = await post(
        http, url, "count", {"inputs": {"n": 1}}, headers={"X-Session-ID": "a"}
    )
    assert status == 200 and headers["Idempotent-Replayed"] == "true"
    assert runs == [1, 2]


async def test_a_sync_repeat_in_flight_waits_for_the_original_envelope(nexus_server, http):
    app, runs, gate, holding = gated_app()
    url = await nexus_server(app)
    first = asyncio.create_task(post(http, url, "hold", {"inputs": {"n": 1}}))
    async with asyncio.timeout(5):
        await holding.wait()
    repeat = asyncio.create_task(post(http, url, "hold", {"inputs": {"n": 1}}))
    done, _ = await asyncio.wait({repeat}, timeout=0.2)
    assert not done, "the repeat must wait for the original, not answer on its own"
    gate.set()
    (status, headers, body), (status2, headers2, body2) = await asyncio.gather(first, repeat)
    assert status == status2 == 200 and body2 == body
    assert "Idempotent-Replayed" not in headers and headers2["Idempotent-Replayed"] == "true"
    assert runs == [1]


async def test_a_stream_repeat_in_flight_follows_the_same_execution_from_its_first_event(
    nexus_server, http
):
    app, runs, gate, _ = gated_app()
    url = await nexus_server(app)
    body = json.dumps({"inputs": {"n": 3}, "mode": "stream"}).encode()
    headers = {"Content-Type": "application/json", KEY: "s-1"}
    async with http.post(f"{url}/workflows/hold/execute", data=body, headers=headers) as first:
        opening = await read_sse(first, limit=2)  # start, progress: the run is mid-way
        assert [event for _, event, _ in opening] == ["start", "progress"]
        async with http.post(f"{url}/workflows/hold/execute", data=body, headers=headers) as repeat:
            assert repeat.headers["Idempotent-Replayed"] == "true"
            followed = await read_sse(repeat, limit=2)
            assert followed == opening  # from the first event, same execution
            gate.set()
            rest = await read_sse(repeat)
        original = opening + await read_sse(first)
    assert followed + rest == original
    assert original[-1][1] == "complete" and original[-1][2]["result"] == {"n": 3, "run": 1}
    assert runs == [3]


async def test_an_async_repeat_in_flight_gets_the_original_202(nexus_server, http):
    app, runs, gate, _ = gated_app()
    url = await nexus_server(app)
    body = {"inputs": {"n": 4}, "mode": "async"}
    answers = await asyncio.gather(*(post(http, url, "hold", body, key="a-1") for _ in range(5)))
    assert {status for status, _, _ in answers} == {202}
    assert len({raw for _, _, raw in answers}) == 1
    assert len({headers["Location"] for _, headers, _ in answers}) == 1
    assert (
        sorted("Idempotent-Replayed" in headers for _, headers, _ in answers)
        == [False] + [True] * 4
    )
    gate.set()
    execution_id = json.loads(answers[0][2])["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}?wait=5") as resp:
        assert (await resp.json())["status"] == "succeeded"
    assert runs == [4]


async def test_a_stream_cancelled_because_its_client_left_does_not_poison_its_key(
    nexus_server, http
):
    app, runs, gate, _ = gated_app()
    url = await nexus_server(app)
    body = json.dumps({"inputs": {"n": 5}, "mode": "stream"}).encode()
    headers = {"Content-Type": "application/json", KEY: "s-2"}
    async with aiohttp.ClientSession() as gone:  # a client that goes away mid-stream
        async with gone.post(f"{url}/workflows/hold/execute", data=body, headers=headers) as resp:
            (_, _, start), *_ = await read_sse(resp, limit=1)
    first_id = start["workflow_id"]
    deadline = time.monotonic() + 10
    status = None
    while status != "cancelled" and time.monotonic() < deadline:
        async with http.get(f"{url}/executions/{first_id}") as resp:
            status = (await resp.json())["status"]
    assert status == "cancelled"
    gate.set()
    async with http.post(f"{url}/workflows/hold/execute", data=body, headers=headers) as retry:
        assert "Idempotent-Replayed" not in retry.headers
        events = await read_sse(retry)
    assert events[-1][1] == "complete"
    assert events[-1][2]["workflow_id"] != first_id
    assert runs == [5, 5]
    # the completed run now holds the key: one more retry replays it
    async with http.post(f"{url}/workflows/hold/execute", data=body, headers=headers) as again:
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await read_sse(again) == events
    assert runs == [5, 5]


async def test_in_memory_keys_are_bounded_by_count_and_bytes_oldest_first(nexus_server, http):
    app, runs, *_ = gated_app(database=":memory:", idempotency_max_keys=2)

    @app.workflow("big")
    async def big(n: int) -> str:
        runs.append(n)
        return "x" * n

    url = await nexus_server(app)
    for key in ("k1", "k2", "k3"):  # a third key pushes out the oldest
        await post(http, url, "count", {"inputs": {"n": 1}}, key=key)
    _, headers, _ = await post(http, url, "count", {"inputs": {"n": 1}}, key="k3")
    assert headers["Idempotent-Replayed"] == "true"
    _, headers, _ = await post(http, url, "count", {"inputs": {"n": 1}}, key="k1")
    assert "Idempotent-Replayed" not in headers  # forgotten: it ran again
    assert runs == [1, 1, 1, 1]

    app, runs, *_ = gated_app(database=":memory:", idempotency_max_bytes=3000)

    @app.workflow("big")
    async def big2(n: int) -> str:
        runs.append(n)
        return "x" * n

    url = await nexus_server(app)
    await post(http, url, "big", {"inputs": {"n": 1200}}, key="b1")
    await post(http, url, "big", {"inputs": {"n": 1200}}, key="b2")  # 2 x ~1.6 KB > 3000
    _, headers, _ = await post(http, url, "big", {"inputs": {"n": 1200}}, key="b2")
    assert headers["Idempotent-Replayed"] == "true"
    _, headers, _ = await post(http, url, "big", {"inputs": {"n": 1200}}, key="b1")
    assert "Idempotent-Replayed" not in headers  # the oldest went to make room
    for _ in range(2):  # larger than the whole budget: never remembered
        _, headers, _ = await post(http, url, "big", {"inputs": {"n": 5000}}, key="huge")
        assert "Idempotent-Replayed" not in headers
    assert runs == [1200, 1200, 1200, 5000, 5000]
