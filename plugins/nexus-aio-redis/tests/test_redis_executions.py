"""Executions, events and idempotency keys on Redis: the store alone, then across two instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from nexus_aio_redis import RedisExecutionStore
from nexus_aio_redis.client import connect

from nexus_aio.errors import ValidationError
from nexus_aio.stores.executions import ExecutionEvent, ExecutionRecord, IdempotencyEntry
from nexus_aio.testing import make_app, start_server


def _record(i: int, *, workflow: str = "w", status: str = "succeeded") -> ExecutionRecord:
    return ExecutionRecord(
        f"e{i:02d}", workflow, "sync", status, {"i": i}, 1000.0 + i // 2, finished_at=2000.0 + i
    )


@pytest.fixture
async def store(redis_server: Any) -> AsyncIterator[RedisExecutionStore]:
    s = RedisExecutionStore(connect(redis_server.url, timeout=1.0), clock=lambda: 5000.0)
    yield s
    await s.close()


async def test_record_roundtrip_keeps_every_field(store: RedisExecutionStore) -> None:
    record = ExecutionRecord(
        "x", "w", "async", "failed", {"a": [1]}, 1.5, None, {"type": "E"}, 2.0, 3.0, "s", "r", "al"
    )
    await store.save(record)
    assert await store.get("x") == record
    assert await store.get("missing") is None


async def test_list_pages_newest_first_with_filters_and_cursor(store: RedisExecutionStore) -> None:
    for i in range(9):
        await store.save(_record(i, workflow="a" if i % 3 else "b", status="succeeded"))
    await store.save(_record(9, status="running"))
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list(limit=4, cursor=cursor)
        ids += [r.id for r in page]
        if cursor is None:
            break
    assert ids == [f"e{i:02d}" for i in range(9, -1, -1)]  # ties on created_at: id desc
    page, cursor = await store.list(workflow="b")
    assert [r.id for r in page] == ["e06", "e03", "e00"] and cursor is None
    page, _ = await store.list(status="running")
    assert [r.id for r in page] == ["e09"]
    with pytest.raises(ValidationError):
        await store.list(cursor="not-a-cursor")
    with pytest.raises(ValidationError):
        await store.list(status="nope")


async def test_events_use_seq_as_stream_position_and_skip_repeats(
    store: RedisExecutionStore,
) -> None:
    events = [ExecutionEvent(n, "progress", {"n": n}, 10.0 + n) for n in range(1, 6)]
    await store.add_events("x", events[:3])
    await store.add_events("x", events)  # whole log again: only 4 and 5 are new
    assert await store.events("x") == events
    assert [e.seq for e in await store.events("x", after_seq=3)] == [4, 5]
    assert await store.events("other") == []


async def test_idempotency_key_first_writer_wins_until_expiry(store: RedisExecutionStore) -> None:
    entry = IdempotencyEntry("k", "h1", "e1", 200, b'{"ok":\n1}', 5060.0)
    assert await store.put_idempotency(entry) is True
    assert await store.put_idempotency(IdempotencyEntry("k", "h2", "e2", 200, b"", 5060.0)) is False
    assert await store.get_idempotency("k") == entry
    assert await store.get_idempotency("absent") is None


async def test_purge_drops_old_and_excess_finished_records_only(
    store: RedisExecutionStore,
) -> None:
    for i in range(6):
        await store.save(_record(i))
    await store.save(_record(6, status="running"))
    await store.add_events("e00", [ExecutionEvent(1, "start", {}, 1.0)])
    assert await store.purge(max_count=2) == 5  # beyond the 2 newest (e06 runs: kept anyway)
    page, _ = await store.list()
    assert [r.id for r in page] == ["e06", "e05"]
    assert await store.events("e00") == []


async def test_mark_interrupted_leaves_shared_runs_alone(store: RedisExecutionStore) -> None:
    await store.save(_record(1, status="running"))
    assert await store.mark_interrupted() == 0
    assert (await store.get("e01")).status == "running"  # type: ignore[union-attr]


async def _collect(app: Any, execution_id: str, after: int, stop_after: int | None) -> list[Any]:
    got = []
    async for event in app.service.follow(execution_id, after):
        got.append(event)
        if stop_after is not None and len(got) == stop_after:
            break  # the client disconnects
    return got


async def test_async_run_on_a_is_followed_live_from_b_and_resumed(redis_server: Any) -> None:
    app_a = make_app(redis_url=redis_server.url)
    app_b = make_app(redis_url=redis_server.url)
    server_a, server_b = await start_server(app_a), await start_server(app_b)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{server_a.url}/workflows/slow/execute",
                json={"inputs": {"seconds": 0.5}, "mode": "async"},
            ) as resp:
                assert resp.status == 202
                execution_id = (await resp.json())["workflow_id"]
        assert app_b.service.live(execution_id) is None
        first = await asyncio.wait_for(_collect(app_b, execution_id, 0, 3), 5)
        record = await app_b.service.get(execution_id)
        assert record is not None and record.status == "running"  # seen live, mid-run
        rest = await asyncio.wait_for(_collect(app_b, execution_id, first[-1].seq, None), 5)
        seqs = [e.seq for e in first + rest]
        assert seqs == list(range(1, len(seqs) + 1))
        assert rest[-1].type == "complete"
        assert rest[-1].data["result"] == {"slept": 0.5}
        done = await app_b.service.get(execution_id)
        assert done is not None and done.status == "succeeded"
        assert await app_a.service.executions.events(execution_id) == first + rest
    finally:
        await server_b.stop()
        await server_a.stop()


async def _read_sse(resp: aiohttp.ClientResponse, limit: int | None) -> list[tuple[int, str]]:
    """(id, event) pairs until the stream ends or ``limit`` events arrived (keepalives skipped)."""
    got: list[tuple[int, str]] = []
    seq, kind = 0, ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line == "" and kind:
            if kind != "keepalive":
                got.append((seq, kind))
            kind = ""
            if limit is not None and len(got) >= limit:
                break
    return got


async def test_async_run_on_a_streamed_over_http_from_b_resumes_with_last_event_id(
    redis_server: Any,
) -> None:
    server_a = await start_server(make_app(redis_url=redis_server.url))
    server_b = await start_server(make_app(redis_url=redis_server.url))
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(
                f"{server_a.url}/workflows/slow/execute",
                json={"inputs": {"seconds": 0.5}, "mode": "async"},
            ) as resp:
                execution_id = (await resp.json())["workflow_id"]
            events_url = f"{server_b.url}/executions/{execution_id}/events"
            async with http.get(events_url) as resp:
                assert resp.status == 200
                first = await _read_sse(resp, 3)  # then the client drops the connection
            headers = {"Last-Event-ID": str(first[-1][0])}
            async with http.get(events_url, headers=headers) as resp:
                rest = await _read_sse(resp, None)
        seqs = [seq for seq, _ in first + rest]
        assert seqs == list(range(1, len(seqs) + 1))
        assert first[0][1] == "start" and rest[-1][1] == "complete"
    finally:
        await server_b.stop()
        await server_a.stop()


async def test_worker_job_for_an_unknown_workflow_fails_the_record(redis_server: Any) -> None:
    from nexus_aio_redis.dispatch import run_job

    app = make_app(redis_url=redis_server.url)
    async with app.open_service() as service:
        store = service.executions
        await store.save(ExecutionRecord("q1", "gone", "async", "queued", {}, 1.0))
        ctx = {"nexus_service": service, "nexus_max_tries": 3, "job_try": 1}
        assert await run_job(ctx, "q1") == "failed"
        record = await store.get("q1")
        assert record is not None and record.error["type"] == "WorkflowNotFound"  # type: ignore[index]
        assert await run_job(ctx, "q1") == "skipped"  # a duplicate delivery does nothing
        await store.save(ExecutionRecord("q2", "sum", "async", "running", {"a": 1, "b": 2}, 1.0))
        assert await run_job({**ctx, "job_try": 4}, "q2") == "lost"
        lost = await store.get("q2")
        assert lost is not None and lost.status == "failed"
        assert lost.error is not None and lost.error["type"] == "WorkerLost"
        assert [e.type for e in await store.events("q2")] == ["error"]
