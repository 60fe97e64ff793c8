"""Every execution's events, live and replayed (issue 11, "Why" and items 6 and 7).

- Replay equals the stream: every execution, sync included, stores the event sequence its stream
  would show (``start`` ... ``complete``|``error``), and ``GET /executions/{id}/events`` serves
  the stored events with their original ids, data and timestamps.
- A plain ``def`` generator is a streaming workflow: a ``chunk`` per item, the list in sync mode,
  run off the event loop.
- A streamed execution has a record and resumable events like any other.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from nexus_aio import Context, Nexus
from nexus_aio.testing import SSEEvent as Event
from nexus_aio.testing import make_app, parse_sse


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    return make_app(**settings)


def kinds(events: list[Event]) -> list[str]:
    return [kind for _, kind, _ in events]


async def live_stream(
    http: aiohttp.ClientSession, url: str, name: str, inputs: dict[str, Any]
) -> list[Event]:
    try:
        async with (
            asyncio.timeout(10),
            http.post(
                f"{url}/workflows/{name}/execute", json={"inputs": inputs, "mode": "stream"}
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return parse_sse(await resp.text())
    except TimeoutError:
        pytest.fail(f"the stream of {name} did not end within 10 s")


async def replay_bytes(
    http: aiohttp.ClientSession, url: str, execution_id: str, last_event_id: int | None = None
) -> bytes:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    async with (
        asyncio.timeout(10),
        http.get(f"{url}/executions/{execution_id}/events", headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return await resp.read()


async def replay(
    http: aiohttp.ClientSession, url: str, execution_id: str, last_event_id: int | None = None
) -> list[Event]:
    return parse_sse((await replay_bytes(http, url, execution_id, last_event_id)).decode())


async def settled_record(
    http: aiohttp.ClientSession, url: str, execution_id: str
) -> dict[str, Any]:
    """The record once finished (its final save done): replay then reads the store."""
    async with http.get(f"{url}/executions/{execution_id}?wait=10") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def clock_moves_on() -> None:
    """Wait until the wall clock is 2 ms later, so a timestamp built now would differ from one
    built before (timestamps carry milliseconds)."""
    start = time.time()
    await asyncio.sleep(0.005)  # not waiting for the server: only for the clock to move
    assert time.time() - start >= 0.002


def stepping_app(**settings: Any) -> Nexus:
    app = app_(**settings)

    @app.workflow("steps")
    async def steps(n: int, ctx: Context) -> str:
        for i in range(n):
            ctx.emit("step", {"i": i})
            ctx.progress((i + 1) / n, f"{i + 1}/{n}")
        return "done"

    return app


# -- replay equals the stream ----------------------------------------------------------------------
async def test_a_sync_executions_replay_is_start_then_its_events_then_complete(nexus_server, http):
    url = await nexus_server(stepping_app())
    async with http.post(f"{url}/workflows/steps/execute", json={"inputs": {"n": 2}}) as resp:
        assert resp.status == 200
        envelope = await resp.json()
    execution_id = envelope["workflow_id"]
    events = await replay(http, url, execution_id)
    assert kinds(events) == ["start", "step", "progress", "step", "progress", "complete"]
    assert [seq for seq, _, _ in events] == list(range(1, 7))
    start, complete = events[0][2], events[-1][2]
    assert start["workflow_id"] == execution_id and start["name"] == "steps"
    assert "timestamp" in start
    assert complete["success"] is True and complete["result"] == "done"
    assert complete["workflow_id"] == execution_id


async def test_a_failed_sync_executions_replay_is_start_then_error(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/fail/execute", json={"inputs": {"message": "boom"}}
    ) as resp:
        assert resp.status == 500
        envelope = await resp.json()
    execution_id = envelope["workflow_id"]
    events = await replay(http, url, execution_id)
    assert [(seq, kind) for seq, kind, _ in events] == [(1, "start"), (2, "error")]
    error = events[-1][2]
    assert error["success"] is False and error["workflow_id"] == execution_id
    assert error["error"]["type"] == "WorkflowExecutionError"
    assert error["error"]["message"] == "boom"


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_stream_executions_replay_equals_its_live_stream(
    nexus_server, http, tmp_path: Path, store
):
    database = ":memory:" if store == "memory" else str(tmp_path / "nexus.db")
    app = stepping_app(database=database)

    @app.workflow("letters")
    async def letters(word: str, ctx: Context) -> AsyncIterator[str]:
        for letter in word:
            ctx.progress(0.5, letter)
            yield letter

    url = await nexus_server(app)
    for name, inputs in (("steps", {"n": 3}), ("letters", {"word": "abc"})):
        live = await live_stream(http, url, name, inputs)
        execution_id = live[0][2]["workflow_id"]
        await settled_record(http, url, execution_id)
        replayed = await replay(http, url, execution_id)
        assert replayed == live  # ids, event names and data, timestamps included


@pytest.mark.parametrize("workflow", ["sum", "fail"])
async def test_replaying_an_execution_twice_gives_byte_identical_events(
    nexus_server, http, workflow
):
    url = await nexus_server(app_())
    inputs = {"a": 1, "b": 2} if workflow == "sum" else {"message": "boom"}
    async with http.post(f"{url}/workflows/{workflow}/execute", json={"inputs": inputs}) as resp:
        execution_id = (await resp.json())["workflow_id"]
    first = await replay_bytes(http, url, execution_id)
    await clock_moves_on()  # an event rebuilt at replay time would now carry a new timestamp
    second = await replay_bytes(http, url, execution_id)
    assert second == first
    assert kinds(parse_sse(first.decode()))[-1] == ("complete" if workflow == "sum" else "error")


# -- plain def generators --------------------------------------------------------------------------
def counting_app() -> Nexus:
    app = app_()

    @app.workflow("count")
    def count(n: int) -> Iterator[int]:
        yield from range(n)

    return app


async def test_a_def_generator_streams_a_chunk_per_item_then_complete(nexus_server, http):
    url = await nexus_server(counting_app())
    events = await live_stream(http, url, "count", {"n": 4})
    assert kinds(events) == ["start", "chunk", "chunk", "chunk", "chunk", "complete"]
    assert [data for _, kind, data in events if kind == "chunk"] == [0, 1, 2, 3]
    assert [seq for seq, _, _ in events] == list(range(1, 7))
    assert events[-1][2]["success"] is True and events[-1][2]["result"] == [0, 1, 2, 3]


async def test_a_def_generator_in_sync_mode_returns_the_list_of_its_items(nexus_server, http):
    url = await nexus_server(counting_app())
    async with http.post(f"{url}/workflows/count/execute", json={"inputs": {"n": 4}}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert body["success"] is True and body["result"] == [0, 1, 2, 3]


def test_a_def_generator_runs_off_the_event_loop(nexus_thread_server):
    app = app_()
    release = threading.Event()

    @app.workflow("held")
    def held() -> Iterator[str]:
        yield "waiting"
        # Blocks its thread until the test releases it. Run on the event loop, it would block
        # the server: /health would not answer, and the wait would end unreleased.
        yield "released" if release.wait(10) else "never released"

    url = nexus_thread_server(app)
    events: list[Event] = []
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            with client.stream(
                "POST", "/workflows/held/execute", json={"inputs": {}, "mode": "stream"}
            ) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                fields: dict[str, str] = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                        continue
                    seq = int(fields["id"].rpartition(":")[2])  # id: <workflow_id>:<n>
                    events.append((seq, fields["event"], json.loads(fields["data"])))
                    fields = {}
                    if events[-1][1] == "chunk":
                        assert events[-1][2] == "waiting"
                        health = client.get("/health", timeout=5)  # while the generator blocks
                        assert health.status_code == 200
                        release.set()
                        rest = "\n".join(lines)
                        break
                else:
                    pytest.fail(f"the stream ended before a chunk: {events}")
    finally:
        release.set()
    events += parse_sse(rest)
    assert kinds(events) == ["start", "chunk", "chunk", "complete"]
    assert events[2][2] == "released"
    assert events[-1][2]["result"] == ["waiting", "released"]


# -- a streamed execution has a record and resumable events ----------------------------------------
async def test_a_streamed_execution_has_a_record_and_events_resumable_after_last_event_id(
    nexus_server, http
):
    app = app_()

    @app.workflow("letters")
    async def letters(word: str) -> AsyncIterator[str]:
        for letter in word:
            yield letter

    url = await nexus_server(app)
    live = await live_stream(http, url, "letters", {"word": "abcd"})
    execution_id = live[0][2]["workflow_id"]
    record = await settled_record(http, url, execution_id)
    assert record["status"] == "succeeded" and record["mode"] == "stream"
    assert record["name"] == "letters" and record["result"] == ["a", "b", "c", "d"]
    assert await replay(http, url, execution_id, last_event_id=3) == live[3:]
    assert await replay(http, url, execution_id, last_event_id=len(live)) == []
