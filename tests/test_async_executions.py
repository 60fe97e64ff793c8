"""Async mode and the /executions routes over real HTTP: lookup, long-poll, history, events,
cancel, ownership and retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from nexus_aio import Context, Nexus, hookimpl
from nexus_aio.errors import ValidationError
from nexus_aio.execution.runtime import EventLog, LiveExecution
from nexus_aio.stores.executions import ExecutionEvent, ExecutionRecord, MemoryExecutionStore
from nexus_aio.testing import make_app, read_sse
from nexus_aio.web.executions import (
    parse_last_event_id,
    parse_limit,
    parse_wait,
    persist_live_events,
    purge_periodically,
)


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    return make_app(**settings)


async def submit(
    http: aiohttp.ClientSession, url: str, name: str, inputs: dict[str, Any] | None = None
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    async with http.post(
        f"{url}/workflows/{name}/execute", json={"inputs": inputs or {}, "mode": "async"}
    ) as resp:
        return resp, await resp.json()


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


def gated_app(**settings: Any) -> tuple[Nexus, asyncio.Event]:
    gate = asyncio.Event()
    app = app_(**settings)

    @app.workflow("gated")
    async def gated(tag: str = "x", ctx: Context = None) -> str:  # type: ignore[assignment]
        ctx.emit("waiting", {"tag": tag})
        await gate.wait()
        return f"done {tag}"

    return app, gate


# -- async mode ------------------------------------------------------------------------------------
async def test_async_mode_returns_202_with_links_and_location(nexus_server, http):
    url = await nexus_server(app_())
    resp, body = await submit(http, url, "sum", {"a": 2, "b": 3})
    assert resp.status == 202
    execution_id = body["workflow_id"]
    assert body["success"] is True and body["status"] == "queued"
    assert resp.headers["Location"] == f"/executions/{execution_id}"
    assert body["links"]["self"] == f"/executions/{execution_id}"
    assert body["links"]["events"] == f"/executions/{execution_id}/events"
    status, record = await get_json(http, f"{url}/executions/{execution_id}?wait=5")
    assert status == 200
    assert record["status"] == "succeeded" and record["result"] == 5
    assert record["name"] == "sum" and record["inputs"] == {"a": 2, "b": 3}
    assert record["mode"] == "async" and record["request_id"]
    assert record["created_at"] and record["started_at"] and record["finished_at"]


async def test_record_has_session_id_and_error_envelope_of_a_failure(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/fail/execute",
        json={"inputs": {"message": "nope"}, "mode": "async", "session_id": "s-1"},
    ) as resp:
        execution_id = (await resp.json())["workflow_id"]
    _, record = await get_json(http, f"{url}/executions/{execution_id}?wait=5")
    assert record["status"] == "failed" and record["session_id"] == "s-1"
    assert record["error"]["type"] == "WorkflowExecutionError"
    assert record["error"]["message"] == "nope"
    assert "result" not in record


async def test_sync_and_stream_executions_can_be_looked_up_too(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}}) as r:
        sync_id = (await r.json())["workflow_id"]
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}, "mode": "stream"}
    ) as r:
        stream_id = (await read_sse(r))[0][2]["workflow_id"]
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": "x"}}) as r:
        rejected_id = (await r.json())["workflow_id"]
    for execution_id, mode, status in (
        (sync_id, "sync", "succeeded"),
        (stream_id, "stream", "succeeded"),
        (rejected_id, "sync", "failed"),
    ):
        code, record = await get_json(http, f"{url}/executions/{execution_id}")
        assert code == 200
        assert (record["mode"], record["status"]) == (mode, status)


async def test_unknown_execution_is_404_everywhere(nexus_server, http):
    url = await nexus_server(app_())
    status, body = await get_json(http, f"{url}/executions/nope")
    assert status == 404 and body["error"]["type"] == "ExecutionNotFound"
    async with http.delete(f"{url}/executions/nope") as resp:
        assert resp.status == 404
    async with http.get(f"{url}/executions/nope/events") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "ExecutionNotFound"


# -- long-poll -------------------------------------------------------------------------------------
async def test_wait_returns_as_soon_as_the_execution_finishes(nexus_server, http):
    app, gate = gated_app()
    url = await nexus_server(app)
    _, body = await submit(http, url, "gated")
    execution_id = body["workflow_id"]
    asyncio.get_running_loop().call_later(0.05, gate.set)
    started = time.monotonic()
    status, record = await get_json(http, f"{url}/executions/{execution_id}?wait=30")
    assert status == 200 and record["status"] == "succeeded" and record["result"] == "done x"
    assert time.monotonic() - started < 5


async def test_wait_gives_up_after_n_seconds_with_the_running_record(nexus_server, http):
    app, gate = gated_app()
    url = await nexus_server(app)
    _, body = await submit(http, url, "gated")
    started = time.monotonic()
    status, record = await get_json(http, f"{url}/executions/{body['workflow_id']}?wait=0.2")
    elapsed = time.monotonic() - started
    gate.set()
    assert status == 200 and record["status"] == "running"
    assert 0.15 <= elapsed < 3


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf"])
async def test_bad_wait_is_400(nexus_server, http, wait):
    url = await nexus_server(app_())
    _, body = await submit(http, url, "sum", {"a": 1, "b": 1})
    status, err = await get_json(http, f"{url}/executions/{body['workflow_id']}?wait={wait}")
    assert status == 400 and err["error"]["details"]["field"] == "wait"


def test_parsers_bound_and_default():
    assert parse_wait(None) == 0 and parse_wait("2.5") == 2.5 and parse_wait("60") == 60.0
    with pytest.raises(ValidationError):  # beyond the maximum the OpenAPI document states
        parse_wait("1e9")
    assert parse_limit(None) == 50 and parse_limit("500") == 500


# -- cancel ----------------------------------------------------------------------------------------
async def test_delete_cancels_a_running_execution_then_409_once_finished(nexus_server, http):
    app, _gate = gated_app()
    url = await nexus_server(app)
    _, body = await submit(http, url, "gated")
    execution_id = body["workflow_id"]
    _, record = await get_json(http, f"{url}/executions/{execution_id}?wait=0.05")
    assert record["status"] == "running"
    async with http.delete(f"{url}/executions/{execution_id}") as resp:
        assert resp.status == 200
        cancelled = await resp.json()
    assert cancelled["status"] == "cancelled" and cancelled["error"]["type"] == "Cancelled"
    _, record = await get_json(http, f"{url}/executions/{execution_id}")
    assert record["status"] == "cancelled" and record["finished_at"]
    async with http.delete(f"{url}/executions/{execution_id}") as resp:
        err = await resp.json()
        assert resp.status == 409 and err["error"]["type"] == "Conflict"
        assert err["error"]["details"]["status"] == "cancelled"
    async with http.get(f"{url}/executions/{execution_id}/events") as resp:
        events = await read_sse(resp)
    assert [k for _, k, _ in events] == ["start", "waiting", "error"]


async def test_delete_of_a_succeeded_execution_is_409(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}}) as r:
        execution_id = (await r.json())["workflow_id"]
    async with http.delete(f"{url}/executions/{execution_id}") as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["details"]["status"] == "succeeded"


# -- history ---------------------------------------------------------------------------------------
async def test_history_filters_by_workflow_and_status_newest_first(nexus_server, http):
    url = await nexus_server(app_())
    ids = []
    for a in range(3):
        async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": a, "b": 0}}):
            pass
    for _ in range(2):
        async with http.post(f"{url}/workflows/fail/execute", json={}) as r:
            ids.append((await r.json())["workflow_id"])
    _, page = await get_json(http, f"{url}/executions?workflow=sum")
    assert [e["result"] for e in page["executions"]] == [2, 1, 0]
    assert page["next_cursor"] is None
    _, page = await get_json(http, f"{url}/executions?status=failed")
    assert [e["id"] for e in page["executions"]] == ids[::-1]
    _, page = await get_json(http, f"{url}/executions?workflow=fail&status=succeeded")
    assert page["executions"] == []


async def test_history_pages_with_cursor_without_duplicates_or_gaps(nexus_server, http):
    url = await nexus_server(app_())
    for a in range(7):
        async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": a, "b": 0}}):
            pass
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        _, page = await get_json(http, f"{url}/executions?limit=3&cursor={cursor}")
        seen.extend(e["result"] for e in page["executions"])
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == [6, 5, 4, 3, 2, 1, 0] and pages == 3


async def test_history_lists_running_executions_under_status_running(nexus_server, http):
    app, gate = gated_app()
    url = await nexus_server(app)
    _, body = await submit(http, url, "gated")
    await get_json(http, f"{url}/executions/{body['workflow_id']}?wait=0.05")
    _, page = await get_json(http, f"{url}/executions?status=running")
    gate.set()
    assert [e["id"] for e in page["executions"]] == [body["workflow_id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
     ("status=done", "status"), ("cursor=%21%21", "cursor")],
)  # fmt: skip
async def test_bad_history_parameters_are_400(nexus_server, http, query, field):
    url = await nexus_server(app_())
    status, body = await get_json(http, f"{url}/executions?{query}")
    assert status == 400 and body["error"]["details"]["field"] == field


# -- events ----------------------------------------------------------------------------------------
async def test_events_replay_a_finished_execution_then_end(nexus_server, http):
    url = await nexus_server(app_())
    _, body = await submit(http, url, "countdown", {"start": 2})
    execution_id = body["workflow_id"]
    await get_json(http, f"{url}/executions/{execution_id}?wait=5")
    async with http.get(f"{url}/executions/{execution_id}/events") as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = await read_sse(resp)
    assert [k for _, k, _ in events] == ["start", "tick", "chunk", "tick", "chunk", "complete"]
    assert [s for s, _, _ in events] == [1, 2, 3, 4, 5, 6]
    async with http.get(f"{url}/executions/{execution_id}/events?last_event_id=4") as resp:
        assert [s for s, _, _ in await read_sse(resp)] == [5, 6]
    async with http.get(
        f"{url}/executions/{execution_id}/events", headers={"Last-Event-ID": "6"}
    ) as resp:
        assert await read_sse(resp) == []


async def test_last_event_id_resume_gets_every_later_event_exactly_once(nexus_server, http):
    gates = [asyncio.Event() for _ in range(4)]
    app = app_()

    @app.workflow("paced")
    async def paced() -> AsyncIterator[int]:
        for i, gate in enumerate(gates):
            await gate.wait()
            yield i

    url = await nexus_server(app)
    _, body = await submit(http, url, "paced")
    execution_id = body["workflow_id"]
    gates[0].set()
    gates[1].set()
    resp = await http.get(f"{url}/executions/{execution_id}/events")
    first = await read_sse(resp, limit=3)  # start, chunk 0, chunk 1: k = 3
    resp.close()
    gates[2].set()  # an event happens while the client is away
    last_id = first[-1][0]
    async with http.get(
        f"{url}/executions/{execution_id}/events", headers={"Last-Event-ID": str(last_id)}
    ) as resp:
        second = await read_sse(resp, limit=1)
        gates[3].set()
        second += await read_sse(resp)
    everything = first + second
    assert [s for s, _, _ in everything] == list(range(1, 7))
    assert [d for _, k, d in everything if k == "chunk"] == [0, 1, 2, 3]
    assert everything[-1][1] == "complete"


async def test_events_of_a_failed_sync_execution_are_start_then_the_error_it_answered(
    nexus_server, http
):
    url = await nexus_server(app_())
    async with http.post(f"{url}/workflows/fail/execute", json={}) as r:
        answered = await r.json()
    execution_id = answered["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}/events") as resp:
        events = await read_sse(resp)
    assert [(s, k) for s, k, _ in events] == [(1, "start"), (2, "error")]
    assert events[0][2]["workflow_id"] == execution_id
    assert events[1][2] == answered  # the stored event is the envelope the client got


async def test_bad_last_event_id_is_400(nexus_server, http):
    url = await nexus_server(app_())
    _, body = await submit(http, url, "sum", {"a": 1, "b": 1})
    async with http.get(
        f"{url}/executions/{body['workflow_id']}/events", headers={"Last-Event-ID": "x"}
    ) as resp:
        assert resp.status == 400


# -- ownership and permissions ---------------------------------------------------------------------
class HeaderActor:
    """Test plugin: the actor is the ``X-Test-Actor`` header; ``cancel`` is refused to 'viewer'."""

    __name__ = "header_actor"

    @hookimpl
    def actor_from_request(self, nexus: Any, request: Any) -> Any:
        name = request.headers.get("X-Test-Actor")
        return {"id": name} if name else None

    @hookimpl
    def permission_allowed(self, nexus: Any, actor: Any, action: str, resource: Any) -> Any:
        if actor and actor["id"] == "viewer" and action == "cancel":
            return False
        return None


async def test_an_actors_executions_are_hidden_from_other_actors(nexus_server, http):
    url = await nexus_server(app_(plugins=[HeaderActor()]))
    alice = {"X-Test-Actor": "alice"}
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}}, headers=alice
    ) as r:
        execution_id = (await r.json())["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}", headers=alice) as r:
        assert r.status == 200
    async with http.get(f"{url}/executions/{execution_id}", headers={"X-Test-Actor": "bob"}) as r:
        assert r.status == 403
    async with http.get(f"{url}/executions/{execution_id}") as r:
        assert r.status == 401
    async with http.get(f"{url}/executions", headers={"X-Test-Actor": "bob"}) as r:
        assert (await r.json())["executions"] == []
    async with http.delete(
        f"{url}/executions/{execution_id}", headers={"X-Test-Actor": "viewer"}
    ) as r:
        assert r.status == 403


# -- retention -------------------------------------------------------------------------------------
def _record(i: int, finished: float | None) -> ExecutionRecord:
    status = "succeeded" if finished is not None else "running"
    return ExecutionRecord(f"e{i}", "wf", "async", status, {}, 1000.0 + i, finished_at=finished)


async def test_retention_purges_by_age_and_count_each_interval():
    now = [2000.0]
    store = MemoryExecutionStore(clock=lambda: now[0])
    for i in range(5):
        await store.save(_record(i, 1000.0 + i if i < 4 else None))
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            now[0] = 2002.5  # e0..e2 finished more than 1000 s ago now
            return
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await purge_periodically(store, 1000.0, 4, 30.0, sleep=fake_sleep)
    remaining, _ = await store.list(limit=10)
    assert sorted(r.id for r in remaining) == ["e3", "e4"]  # e4 is running: never purged
    assert sleeps == [30.0, 30.0]


async def test_retention_runs_in_a_live_server(nexus_server, http):
    app = app_(execution_retention_count=2, execution_retention_interval=0.05)
    url = await nexus_server(app)
    for a in range(4):
        async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": a, "b": 0}}):
            pass
    async with asyncio.timeout(5):
        while True:
            _, page = await get_json(http, f"{url}/executions")
            if len(page["executions"]) == 2:
                break
            await asyncio.sleep(0.02)
    assert [e["result"] for e in page["executions"]] == [3, 2]


def test_last_event_id_parser_prefers_the_header():
    class Req:
        headers = {"Last-Event-ID": "7"}
        query = {"last_event_id": "3"}

    assert parse_last_event_id(Req()) == 7  # type: ignore[arg-type]


# -- executions running elsewhere (another worker process) and incremental event storage ----------
async def test_events_and_wait_follow_an_execution_running_in_another_process(nexus_server, http):
    app = app_()
    url = await nexus_server(app)
    store = app.service.executions
    record = ExecutionRecord("elsewhere", "sum", "async", "running", {}, time.time())
    await store.save(record)
    await store.add_events("elsewhere", [ExecutionEvent(1, "start", {"n": 1}, time.time())])
    resp = await http.get(f"{url}/executions/elsewhere/events")
    first = await read_sse(resp, limit=1)
    status, waited = await get_json(http, f"{url}/executions/elsewhere?wait=0.1")
    assert status == 200 and waited["status"] == "running"
    record.status, record.result, record.finished_at = "succeeded", 2, time.time()
    await store.add_events("elsewhere", [ExecutionEvent(2, "chunk", 2, time.time())])
    await store.save(record)
    async with asyncio.timeout(5):
        rest = await read_sse(resp)
    resp.close()
    assert [(s, k) for s, k, _ in first + rest] == [(1, "start"), (2, "chunk"), (3, "complete")]
    assert rest[-1][2]["result"] == 2


async def test_running_executions_events_are_handed_to_the_store_in_batches():
    store = MemoryExecutionStore()
    logs = {i: EventLog(persist=True) for i in ("a", "b")}
    runtime = SimpleNamespace(
        executions=store,
        live={i: LiveExecution(ExecutionRecord(i, "wf", "async", "running", {}, 0.0), log_,
                               asyncio.Event())
              for i, log_ in logs.items()},
    )  # fmt: skip
    written: dict[str, int] = {}
    logs["a"].push("start", 1)
    logs["a"].push("chunk", 2)
    assert await persist_live_events(runtime, written) == 2  # type: ignore[arg-type]
    assert await persist_live_events(runtime, written) == 0  # type: ignore[arg-type]
    logs["a"].push("complete", 3)
    logs["b"].push("start", 4)
    assert await persist_live_events(runtime, written) == 2  # type: ignore[arg-type]
    assert [e.type for e in await store.events("a")] == ["start", "chunk", "complete"]
    del runtime.live["a"]
    await persist_live_events(runtime, written)  # type: ignore[arg-type]
    assert written == {"b": 1}
