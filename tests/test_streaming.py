"""Stream mode over real HTTP: the SSE wire format, event kinds, errors, disconnects, resume."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from nexus_aio import Context, Nexus
from nexus_aio.testing import SSEEvent as Event
from nexus_aio.testing import make_app, read_sse


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    return make_app(**settings)


async def stream(
    http: aiohttp.ClientSession, url: str, name: str, inputs: dict[str, Any]
) -> list[Event]:
    async with http.post(
        f"{url}/workflows/{name}/execute", json={"inputs": inputs, "mode": "stream"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return await read_sse(resp)


def kinds(events: list[Event]) -> list[str]:
    return [kind for _, kind, _ in events]


# -- the wire format and the spec's clients --------------------------------------------------------
def test_spec_httpx_stream_example_receives_start_then_complete(nexus_thread_server):
    url = nexus_thread_server(app_())
    seen: list[dict[str, Any]] = []
    kinds_seen: list[str] = []
    # The spec's example, with the URL of a real workflow.
    with httpx.stream(
        "POST",
        f"{url}/workflows/echo/execute",
        json={"inputs": {"param": "hi"}, "mode": "stream"},
        timeout=10,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                kinds_seen.append(line[6:].strip())
            if line.startswith("data:"):
                data = json.loads(line[5:])
                seen.append(data)
    assert kinds_seen == ["start", "complete"]
    assert seen[0]["name"] == "echo" and seen[0]["workflow_id"] == seen[1]["workflow_id"]
    assert seen[1]["success"] is True and seen[1]["result"] == {"param": "hi"}
    assert set(seen[1]) >= {"success", "result", "workflow_id", "execution_time", "timestamp"}


async def test_events_are_numbered_from_one_without_gaps_and_end_with_a_blank_line(
    nexus_server, http
):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}, "mode": "stream"}
    ) as resp:
        raw = await resp.text()
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""  # the last event is terminated by a blank line
    start = blocks[0].splitlines()
    workflow_id = json.loads(start[2][6:])["workflow_id"]
    # An execute stream's ids name the execution too (a reconnecting EventSource resumes it);
    # the first event carries the stream's one ``retry:``.
    assert start[0] == f"id: {workflow_id}:1"
    assert start[1] == "event: start"
    assert start[2].startswith("data: {")
    assert start[3] == "retry: 1000" and len(start) == 4
    assert blocks[1].splitlines()[:2] == [f"id: {workflow_id}:2", "event: complete"]
    assert json.loads(blocks[1].splitlines()[2][6:])["result"] == 3
    assert len(blocks[1].splitlines()) == 3


async def test_query_mode_stream_on_post(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/sum/execute?mode=stream", json={"inputs": {"a": 2, "b": 5}}
    ) as resp:
        events = await read_sse(resp)
    assert kinds(events) == ["start", "complete"]
    assert events[1][2]["result"] == 7


async def test_get_execute_takes_inputs_as_query_parameters(nexus_server, http):
    url = await nexus_server(app_())
    async with http.get(f"{url}/workflows/sum/execute?mode=stream&a=4&b=5") as resp:
        events = await read_sse(resp)
    assert kinds(events) == ["start", "complete"] and events[1][2]["result"] == 9


async def test_get_execute_takes_inputs_as_url_encoded_json(nexus_server, http):
    url = await nexus_server(app_())
    params = {"mode": "stream", "inputs": json.dumps({"a": 10, "b": -3})}
    async with http.get(f"{url}/workflows/sum/execute", params=params) as resp:
        events = await read_sse(resp)
    assert kinds(events) == ["start", "complete"] and events[1][2]["result"] == 7


# -- event kinds -----------------------------------------------------------------------------------
async def test_async_generator_streams_one_chunk_per_item_in_order(nexus_server, http):
    app = app_()

    @app.workflow("letters")
    async def letters(word: str) -> AsyncIterator[str]:
        for letter in word:
            await asyncio.sleep(0)
            yield letter

    url = await nexus_server(app)
    events = await stream(http, url, "letters", {"word": "stream"})
    assert kinds(events) == ["start"] + ["chunk"] * 6 + ["complete"]
    assert [data for _, kind, data in events if kind == "chunk"] == list("stream")
    assert [seq for seq, _, _ in events] == list(range(1, 9))
    assert events[-1][2]["result"] == list("stream")


async def test_dag_streams_node_start_and_node_complete_for_every_node(nexus_server, http):
    url = await nexus_server(app_())
    events = await stream(http, url, "text-stats", {"text": "a bb ccc"})
    assert kinds(events)[0] == "start" and kinds(events)[-1] == "complete"
    started = [d["node"] for _, k, d in events if k == "node_start"]
    completed = {d["node"]: d["output"] for _, k, d in events if k == "node_complete"}
    assert sorted(started) == ["count", "longest", "report", "tokenize"]
    assert completed["count"] == {"count": 3} and completed["longest"] == {"longest": "ccc"}
    order = [(k, d["node"]) for _, k, d in events if k.startswith("node_")]
    assert order.index(("node_complete", "tokenize")) < order.index(("node_start", "count"))


async def test_progress_and_custom_emit_events_arrive_in_order(nexus_server, http):
    app = app_()

    @app.workflow("steps")
    async def steps(n: int, ctx: Context) -> str:
        for i in range(n):
            ctx.emit("step", {"i": i})
            ctx.progress((i + 1) / n, f"{i + 1}/{n}")
        return "done"

    url = await nexus_server(app)
    events = await stream(http, url, "steps", {"n": 2})
    assert kinds(events) == ["start", "step", "progress", "step", "progress", "complete"]
    assert events[1][2] == {"i": 0}
    assert events[4][2] == {"fraction": 1.0, "message": "2/2"}


# -- errors ----------------------------------------------------------------------------------------
async def test_errors_before_the_stream_opens_are_plain_http_envelopes(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/nope/execute", json={"inputs": {}, "mode": "stream"}
    ) as resp:
        body = await resp.json()
        assert resp.status == 404 and resp.headers["Content-Type"] == "application/json"
        assert body["success"] is False and body["error"]["type"] == "WorkflowNotFound"
    async with http.get(f"{url}/workflows/sum/execute?mode=stream&a=x&b=1") as resp:
        body = await resp.json()
        assert resp.status == 400 and body["error"]["type"] == "ValidationError"
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1}, "mode": "stream"}
    ) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["error"]["type"] == "ValidationError"


async def test_saturated_server_refuses_a_stream_with_503_before_opening_it(nexus_server, http):
    gate = asyncio.Event()
    app = app_(max_concurrent_requests=1)

    @app.workflow("hold")
    async def hold() -> str:
        await gate.wait()
        return "released"

    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/hold/execute", json={"inputs": {}, "mode": "stream"}
    ) as first:
        assert (await read_sse(first, limit=1))[0][1] == "start"
        async with http.post(
            f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}, "mode": "stream"}
        ) as second:
            body = await second.json()
            assert second.status == 503 and body["error"]["type"] == "ServiceUnavailable"
            assert second.headers["Retry-After"] == "1"
        gate.set()
        rest = await read_sse(first)
    assert kinds(rest) == ["complete"] and rest[0][2]["result"] == "released"


async def test_a_failure_after_the_stream_opens_is_an_error_event_then_the_stream_closes(
    nexus_server, http
):
    url = await nexus_server(app_())
    events = await stream(http, url, "fail", {"message": "boom"})
    assert kinds(events) == ["start", "error"]
    envelope = events[1][2]
    assert envelope["success"] is False
    assert envelope["error"]["type"] == "WorkflowExecutionError"
    assert envelope["error"]["message"] == "boom"
    assert envelope["workflow_id"] == events[0][2]["workflow_id"]


async def test_a_timeout_during_the_stream_is_an_error_event(nexus_server, http):
    app = app_()

    @app.workflow("forever", timeout=0.1)
    async def forever() -> None:
        await asyncio.Event().wait()

    url = await nexus_server(app)
    events = await stream(http, url, "forever", {})
    assert kinds(events) == ["start", "error"] and events[1][2]["error"]["type"] == "Timeout"


# -- keepalive, disconnects, resume ----------------------------------------------------------------
async def test_keepalive_events_repeat_the_last_event_id_while_the_workflow_is_silent(
    nexus_server, http
):
    gate = asyncio.Event()
    app = app_(sse_keepalive=0.05)

    @app.workflow("quiet")
    async def quiet() -> str:
        await gate.wait()
        return "spoke"

    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/quiet/execute", json={"inputs": {}, "mode": "stream"}
    ) as resp:
        first = await read_sse(resp, limit=3)
        gate.set()
        rest = await read_sse(resp)
    assert kinds(first) == ["start", "keepalive", "keepalive"]
    assert [seq for seq, _, _ in first] == [1, 1, 1]  # a resume after a keepalive skips nothing
    assert "timestamp" in first[1][2]
    real = [e for e in rest if e[1] != "keepalive"]
    assert kinds(real) == ["complete"] and real[0][0] == 2


async def test_client_disconnect_cancels_the_execution_without_error_logs(
    nexus_server, http, caplog
):
    started = asyncio.Event()
    cancelled = asyncio.Event()
    app = app_(stream_resume_grace=0.1)  # no client resumes it: cancelled after the grace

    @app.workflow("endless")
    async def endless() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    url = await nexus_server(app)
    caplog.set_level(logging.DEBUG, logger="nexus_aio")
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    resp = await http.post(f"{url}/workflows/endless/execute", json={"mode": "stream"})
    (start,) = await read_sse(resp, limit=1)
    await started.wait()
    resp.close()  # drop the connection mid-stream
    async with asyncio.timeout(5):
        await cancelled.wait()
    execution_id = start[2]["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}?wait=5") as got:
        record = await got.json()
    assert record["status"] == "cancelled" and record["error"]["type"] == "Cancelled"
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


async def test_disconnect_keeps_running_when_cancel_on_disconnect_is_off_and_resume_works(
    nexus_server, http
):
    gate = asyncio.Event()
    app = app_(cancel_on_disconnect=False)

    @app.workflow("ticks")
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            if i == 3:
                await gate.wait()
            yield i

    url = await nexus_server(app)
    resp = await http.post(
        f"{url}/workflows/ticks/execute", json={"inputs": {"n": 6}, "mode": "stream"}
    )
    first = await read_sse(resp, limit=3)  # start, chunk 0, chunk 1
    resp.close()
    gate.set()
    execution_id = first[0][2]["workflow_id"]
    headers = {"Last-Event-ID": str(first[-1][0])}
    async with http.get(f"{url}/executions/{execution_id}/events", headers=headers) as again:
        rest = await read_sse(again)
    seqs = [seq for seq, _, _ in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))  # no duplicate, no gap
    assert [d for _, k, d in first + rest if k == "chunk"] == [0, 1, 2, 3, 4, 5]
    assert kinds(rest)[-1] == "complete"


async def test_a_stream_longer_than_the_sqlite_write_buffer_is_stored_whole(
    nexus_server, http, tmp_path
):
    app = app_(database=str(tmp_path / "nexus.db"))

    @app.workflow("many")
    async def many(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    url = await nexus_server(app)
    n = 10_050  # more than the store buffers (10 000 rows): its final save once hung
    events = await stream(http, url, "many", {"n": n})
    assert len(events) == n + 2
    execution_id = events[0][2]["workflow_id"]
    await app.service.get(execution_id)  # settled: the final save ran after the last event
    stored = await app.service.executions.events(execution_id)
    assert [e.seq for e in stored] == list(range(1, n + 3))
    async with asyncio.timeout(10):
        async with http.get(f"{url}/executions/{execution_id}/events?last_event_id={n}") as r:
            tail = await read_sse(r)
        async with http.get(f"{url}/executions/{execution_id}?wait=5") as r:
            record = await r.json()
    assert [(s, k) for s, k, _ in tail] == [(n + 1, "chunk"), (n + 2, "complete")]
    assert record["status"] == "succeeded" and len(record["result"]) == n
