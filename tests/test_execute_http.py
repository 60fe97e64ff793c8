"""POST /workflows/{name}/execute over real HTTP: envelopes, validation, limits, errors."""

from __future__ import annotations

import asyncio
import re
import threading

import aiohttp
import pytest

from nexus_aio import Context, Nexus
from nexus_aio.testing import make_app

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def post(http: aiohttp.ClientSession, url: str, body: object, **kw: object):
    async with http.post(url, json=body, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, resp.headers, await resp.json()


async def test_execute_returns_the_success_envelope(nexus_server, http):
    url = await nexus_server(make_app())
    status, headers, data = await post(
        http, f"{url}/workflows/sum/execute", {"inputs": {"a": 2, "b": 40}}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert set(data) == {"success", "result", "workflow_id", "execution_time", "timestamp"}
    assert data["success"] is True and data["result"] == 42
    assert isinstance(data["execution_time"], float) and data["execution_time"] >= 0
    assert ISO_Z.match(data["timestamp"])
    assert data["workflow_id"].startswith("wf-")


async def test_workflow_ids_are_unique_per_execution(nexus_server, http):
    url = await nexus_server(make_app())
    ids = set()
    for i in range(20):
        _, _, data = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": i, "b": 1}})
        ids.add(data["workflow_id"])
    assert len(ids) == 20


async def test_workflow_ids_made_later_sort_later(nexus_server, http):
    """The first 11 hex digits are the time in ms: a store's id index grows at its end."""
    url = await nexus_server(make_app())
    ids = []
    for i in range(20):
        _, _, data = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": i, "b": 1}})
        ids.append(data["workflow_id"])
    assert all(re.fullmatch(r"wf-[0-9a-f]{24}", x) for x in ids), ids
    stamps = [int(x[3:14], 16) for x in ids]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]  # 20 round trips take > 1 ms
    assert len({x[14:] for x in ids}) == 20  # the random part differs within a millisecond too


async def test_request_id_is_echoed_or_generated(nexus_server, http):
    url = await nexus_server(make_app())
    _, headers, _ = await post(
        http,
        f"{url}/workflows/sum/execute",
        {"inputs": {"a": 1, "b": 1}},
        headers={"X-Request-ID": "req-12345"},
    )
    assert headers["X-Request-ID"] == "req-12345"
    _, headers, _ = await post(http, f"{url}/workflows/nope/execute", {"inputs": {}})
    assert headers["X-Request-ID"].startswith("req-")
    async with http.get(f"{url}/health") as resp:
        assert resp.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("value", "received"),
    [("3", "string"), (1.5, "number"), (True, "boolean"), (None, "null"), ([1], "array")],
)
async def test_int_input_is_typed_strictly(nexus_server, http, value, received):
    url = await nexus_server(make_app())
    status, _, data = await post(
        http, f"{url}/workflows/sum/execute", {"inputs": {"a": value, "b": 1}}
    )
    assert status == 400
    assert data["success"] is False
    assert data["error"]["type"] == "ValidationError"
    details = data["error"]["details"]
    assert (details["field"], details["expected"], details["received"]) == (
        "a",
        "integer",
        received,
    )


async def test_every_input_problem_is_listed(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, data = await post(
        http, f"{url}/workflows/greet/execute", {"inputs": {"greeting": 5, "extra": "x"}}
    )
    assert status == 400
    problems = {(e["field"], e["received"]) for e in data["error"]["details"]["errors"]}
    assert problems == {
        ("name", "missing"),
        ("greeting", "number"),
        ("extra", "string"),
    } or problems == {("name", "missing"), ("greeting", "integer"), ("extra", "string")}
    assert ISO_Z.match(data["timestamp"])
    assert data["workflow_id"].startswith("wf-")


@pytest.mark.parametrize("inputs", [[1, 2], "a=1", 7])
async def test_inputs_must_be_an_object(nexus_server, http, inputs):
    url = await nexus_server(make_app())
    status, _, data = await post(http, f"{url}/workflows/sum/execute", {"inputs": inputs})
    assert status == 400
    assert data["error"]["details"]["field"] == "inputs"
    assert data["error"]["details"]["expected"] == "object"


async def test_malformed_json_is_a_400(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.post(
        f"{url}/workflows/sum/execute",
        data=b'{"inputs": {"a": 1,',
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        data = await resp.json()
    assert data["error"]["type"] == "ValidationError"
    assert "Malformed JSON" in data["error"]["message"]


async def test_body_must_be_an_object_and_fields_known(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, data = await post(http, f"{url}/workflows/sum/execute", [1, 2])
    assert status == 400 and data["error"]["details"]["field"] == "body"
    status, _, data = await post(http, f"{url}/workflows/sum/execute", {"a": 1, "b": 2})
    assert status == 400 and data["error"]["details"]["field"] in ("a", "b")


async def test_unknown_workflow_is_404(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, data = await post(http, f"{url}/workflows/nonexistent/execute", {"inputs": {}})
    assert status == 404
    assert data["error"]["type"] == "WorkflowNotFound"
    status, _, data = await post(http, f"{url}/no/such/route", {})
    assert status == 404 and data["success"] is False and data["error"]["type"] == "NotFound"


async def test_wrong_method_is_405_with_allow(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.delete(f"{url}/workflows/sum/execute") as resp:
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "POST"}
        data = await resp.json()
    assert data["error"]["type"] == "MethodNotAllowed"


async def test_oversized_body_is_413_by_content_length(nexus_server, http):
    url = await nexus_server(make_app(max_request_size=1000))
    body = b'{"inputs": {"text": "' + b"x" * 5000 + b'"}}'
    async with http.post(f"{url}/workflows/word_count/execute", data=body) as resp:
        assert resp.status == 413
        data = await resp.json()
    assert data["error"]["type"] == "PayloadTooLarge"


async def test_oversized_chunked_body_is_413_without_buffering_it_all(nexus_server, http):
    url = await nexus_server(make_app(max_request_size=1000))
    sent = 0

    async def chunks():
        nonlocal sent
        yield b'{"inputs": {"text": "'
        for _ in range(64):
            sent += 1024
            yield b"x" * 1024
        yield b'"}}'

    async with http.post(f"{url}/workflows/word_count/execute", data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["type"] == "PayloadTooLarge"


@pytest.mark.parametrize(
    "inputs",
    [
        {"text": "x", "__proto__": {}},
        {"text": {"nested": [{"constructor": 1}]}},
        {"text": "x", "__class__": "y"},
        {"text": [{"deep": {"prototype": True}}]},
    ],
)
async def test_dangerous_keys_at_any_depth_are_refused(nexus_server, http, inputs):
    seen = []
    app = make_app()

    @app.workflow()
    async def record(text: object) -> None:
        seen.append(text)

    url = await nexus_server(app)
    status, _, data = await post(http, f"{url}/workflows/record/execute", {"inputs": inputs})
    assert status == 400
    assert data["success"] is False
    assert seen == []


async def test_dangerous_keys_in_context_are_refused(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, _ = await post(
        http,
        f"{url}/workflows/sum/execute",
        {"inputs": {"a": 1, "b": 2}, "context": {"__globals__": 1}},
    )
    assert status == 400


async def test_long_keys_and_deep_nesting_are_refused(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, _ = await post(
        http, f"{url}/workflows/echo/execute", {"inputs": {"param": "x", "k" * 257: 1}}
    )
    assert status == 400
    deep: object = "x"
    for _ in range(70):
        deep = {"d": deep}
    status, _, _ = await post(http, f"{url}/workflows/echo/execute", {"inputs": {"param": deep}})
    assert status == 400


async def test_workflow_exception_is_500_without_traceback(nexus_server, http, caplog):
    url = await nexus_server(make_app())
    status, _, data = await post(
        http,
        f"{url}/workflows/fail/execute",
        {"inputs": {"message": "disk full"}},
        headers={"X-Request-ID": "req-fail-1"},
    )
    assert status == 500
    assert data["error"]["type"] == "WorkflowExecutionError"
    assert data["error"]["message"] == "disk full"
    assert "Traceback" not in str(data)
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "req-fail-1" in logged and "RuntimeError" in logged


async def test_timeout_is_504_and_cancels_the_workflow(nexus_server, http):
    app = make_app(request_timeout=5)
    cancelled = asyncio.Event()

    @app.workflow(timeout=0.2)
    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    url = await nexus_server(app)
    status, _, data = await post(http, f"{url}/workflows/hang/execute", {"inputs": {}})
    assert status == 504
    assert data["error"]["type"] == "Timeout"
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_global_request_timeout_from_environment(nexus_server, http, monkeypatch):
    monkeypatch.setenv("NEXUS_REQUEST_TIMEOUT", "0.2")
    app = make_app()
    assert app.settings.request_timeout == 0.2
    url = await nexus_server(app)
    status, _, _ = await post(http, f"{url}/workflows/slow/execute", {"inputs": {"seconds": 3}})
    assert status == 504


async def test_saturation_is_503_with_retry_after(nexus_server, http):
    app = make_app(max_concurrent_requests=2)
    release = asyncio.Event()
    both_running = asyncio.Event()
    entered = 0

    @app.workflow()
    async def block() -> str:
        nonlocal entered
        entered += 1
        if entered == 2:
            both_running.set()
        await release.wait()
        return "done"

    url = await nexus_server(app)
    first = [
        asyncio.create_task(post(http, f"{url}/workflows/block/execute", {"inputs": {}}))
        for _ in range(2)
    ]
    await asyncio.wait_for(both_running.wait(), 10)
    status, headers, data = await post(http, f"{url}/workflows/block/execute", {"inputs": {}})
    assert status == 503
    assert data["error"]["type"] == "ServiceUnavailable"
    assert int(headers["Retry-After"]) >= 1
    release.set()
    assert [r[0] for r in await asyncio.gather(*first)] == [200, 200]


async def test_sync_functions_run_off_the_event_loop(nexus_server, http):
    app = make_app()
    threads = []

    @app.workflow()
    def where() -> str:
        threads.append(threading.current_thread())
        return threading.current_thread().name

    url = await nexus_server(app)
    _, _, data = await post(http, f"{url}/workflows/where/execute", {"inputs": {}})
    assert threads[0] is not threading.main_thread()
    assert data["result"].startswith("nexus-sync")


async def test_blocking_workflow_does_not_block_other_requests(nexus_server, http):
    app = make_app()
    gate = threading.Event()
    started = threading.Event()

    @app.workflow()
    def blocker() -> str:
        started.set()
        gate.wait(10)
        return "unblocked"

    url = await nexus_server(app)
    blocked = asyncio.create_task(post(http, f"{url}/workflows/blocker/execute", {"inputs": {}}))
    assert await asyncio.to_thread(started.wait, 10)
    status, _, data = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": 1, "b": 1}})
    assert status == 200 and data["result"] == 2 and not blocked.done()
    gate.set()
    assert (await blocked)[2]["result"] == "unblocked"


async def test_context_carries_metadata_and_execution_id(nexus_server, http):
    app = make_app()

    @app.workflow()
    async def meta(ctx: Context) -> dict:
        return {"id": ctx.execution_id, "metadata": ctx.metadata, "session": ctx.session}

    url = await nexus_server(app)
    _, _, data = await post(
        http, f"{url}/workflows/meta/execute", {"inputs": {}, "context": {"user_id": "user123"}}
    )
    assert data["result"]["id"] == data["workflow_id"]
    assert data["result"]["metadata"] == {"user_id": "user123"}


async def test_api_prefix_moves_every_route(nexus_server, http, monkeypatch):
    monkeypatch.setenv("NEXUS_API_PREFIX", "/api/v1")
    app = make_app()
    url = await nexus_server(app)
    assert url.endswith("/api/v1")
    status, _, data = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": 1, "b": 2}})
    assert status == 200 and data["result"] == 3
    root = url.removesuffix("/api/v1")
    status, _, _ = await post(http, f"{root}/workflows/sum/execute", {"inputs": {"a": 1, "b": 2}})
    assert status == 404


async def test_response_compression(nexus_server, http):
    app = make_app()
    app.api.response_compression = True

    @app.workflow()
    async def big() -> str:
        return "x" * 10_000

    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/big/execute", json={"inputs": {}}, headers={"Accept-Encoding": "gzip"}
    ) as resp:
        assert resp.headers.get("Content-Encoding") == "gzip"
        assert (await resp.json())["result"] == "x" * 10_000


async def test_dag_workflow_over_http(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, data = await post(
        http, f"{url}/workflows/text-stats/execute", {"inputs": {"text": "Hello big World"}}
    )
    assert status == 200
    assert data["result"] == {"title": "report", "count": 3, "longest": "hello"}


async def test_non_json_result_is_a_clear_500(nexus_server, http):
    app = Nexus(database=":memory:")

    @app.workflow()
    async def weird() -> object:
        return object()

    url = await nexus_server(app)
    status, _, data = await post(http, f"{url}/workflows/weird/execute", {"inputs": {}})
    assert status == 500
    assert "not JSON serializable" in data["error"]["message"]
