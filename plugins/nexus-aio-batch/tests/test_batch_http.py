"""The batch route over real HTTP: envelopes per item, malformed batches, limits, auth, sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from nexus_aio import Nexus, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.testing import make_app

BATCH = "/workflows/batch"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"workflows": list(items)}


async def test_plugin_is_listed_by_get_plugins_with_version_and_hooks(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.get(f"{url}/plugins") as resp:
        plugins = (await resp.json())["plugins"]
    plugin = next(p for p in plugins if p["name"] == "batch")
    assert plugin["version"] == "0.1.0"
    assert plugin["hooks"] == ["openapi_spec", "register_routes", "register_settings"]
    assert plugin["builtin"] is False


async def test_results_keep_request_order_and_one_failure_does_not_fail_the_others(
    nexus_server, http
):
    url = await nexus_server(make_app())
    status, body = await post(
        http,
        url + BATCH,
        batch(
            {"name": "sum", "inputs": {"a": 1, "b": 2}},
            {"name": "sum", "inputs": {"a": "x", "b": 2}},
            {"name": "nope"},
            {"name": "fail", "inputs": {"message": "boom"}},
            {"name": "greet", "inputs": {"name": "Ada"}},
        ),
    )
    assert status == 200
    assert (body["success"], body["total"], body["succeeded"], body["failed"]) == (
        False,
        5,
        2,
        3,
    )
    assert body["execution_time"] >= 0
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["name"] for r in results] == ["sum", "sum", "nope", "fail", "greet"]
    assert [r["status_code"] for r in results] == [200, 400, 404, 500, 200]
    assert results[0]["result"] == 3 and results[0]["workflow_id"].startswith("wf-")
    assert results[1]["error"]["type"] == "ValidationError"
    assert results[2]["error"]["type"] == "WorkflowNotFound"
    assert results[2]["workflow_id"] is None
    assert results[3]["error"] == {
        "type": "WorkflowExecutionError",
        "message": "boom",
        "details": {"exception": "RuntimeError"},
    }
    assert results[4]["result"]["message"] == "Hello, Ada!"


async def test_each_item_envelope_equals_what_a_single_execute_returns(nexus_server, http):
    url = await nexus_server(make_app())
    single_ok = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": 2, "b": 5}})
    single_bad = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": 2}})
    _, body = await post(
        http,
        url + BATCH,
        batch({"name": "sum", "inputs": {"a": 2, "b": 5}}, {"name": "sum", "inputs": {"a": 2}}),
    )
    ok, bad = body["results"]
    volatile = {"workflow_id", "timestamp", "execution_time"}
    extra = {"index", "name", "status_code"}
    assert ok["status_code"] == single_ok[0] == 200
    assert bad["status_code"] == single_bad[0] == 400
    for item, (_, single) in ((ok, single_ok), (bad, single_bad)):
        assert set(item) - extra == set(single)
        assert {k: v for k, v in item.items() if k not in volatile | extra} == {
            k: v for k, v in single.items() if k not in volatile
        }


async def test_all_items_succeeding_makes_the_batch_successful(nexus_server, http):
    url = await nexus_server(make_app())
    items = [{"name": "sum", "inputs": {"a": i, "b": i}} for i in range(12)]
    status, body = await post(http, url + BATCH, batch(*items))
    assert status == 200
    assert body["success"] is True
    assert (body["total"], body["succeeded"], body["failed"]) == (12, 12, 0)
    assert [r["result"] for r in body["results"]] == [2 * i for i in range(12)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"name": "sum"}], "body"),
        ({}, "workflows"),
        ({"workflows": {"name": "sum"}}, "workflows"),
        ({"workflows": []}, "workflows"),
        ({"workflows": ["sum"]}, "workflows[0]"),
        ({"workflows": [{"name": "sum"}, {"inputs": {}}]}, "workflows[1].name"),
        ({"workflows": [{"name": 3}]}, "workflows[0].name"),
        ({"workflows": [{"name": "sum"}], "parallel": True}, "parallel"),
    ],
)
async def test_malformed_batch_is_a_400_envelope_naming_the_field(nexus_server, http, body, field):
    url = await nexus_server(make_app())
    status, answer = await post(http, url + BATCH, body)
    assert status == 400
    assert answer["success"] is False
    assert answer["error"]["type"] == "ValidationError"
    assert answer["error"]["details"]["field"] == field


async def test_malformed_json_is_a_400(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.post(url + BATCH, data=b"{nope") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "ValidationError"


async def test_batch_settings_work_through_constructor_app_api_and_environment(
    nexus_server, http, monkeypatch
):
    by_api = make_app()
    by_api.api.batch_max_items = 2
    apps = [make_app(batch_max_items=2), by_api]
    monkeypatch.setenv("NEXUS_BATCH_MAX_ITEMS", "2")
    apps.append(make_app())
    monkeypatch.delenv("NEXUS_BATCH_MAX_ITEMS")
    items = [{"name": "sum", "inputs": {"a": 1, "b": 1}}] * 3
    for app in apps:
        status, body = await post(http, await nexus_server(app) + BATCH, batch(*items))
        assert status == 400
        assert body["error"]["details"]["batch_max_items"] == 2


def test_batch_settings_are_type_checked():
    with pytest.raises(ConfigurationError, match="batch_max_items must be an integer"):
        make_app(batch_max_items="3")
    with pytest.raises(ConfigurationError, match="batch_concurrency must be an integer"):
        make_app().api.batch_concurrency = 2.5


async def test_more_than_batch_max_items_is_a_400(nexus_server, http):
    url = await nexus_server(make_app(batch_max_items=3))
    items = [{"name": "sum", "inputs": {"a": 1, "b": 1}}] * 4
    status, body = await post(http, url + BATCH, batch(*items))
    assert status == 400
    assert body["error"]["details"]["batch_max_items"] == 3
    assert body["error"]["details"]["received"] == 4
    status, body = await post(http, url + BATCH, batch(*items[:3]))
    assert status == 200 and body["succeeded"] == 3


async def test_body_over_max_request_size_is_a_413(nexus_server, http):
    url = await nexus_server(make_app(max_request_size=200))
    items = [{"name": "echo", "inputs": {"param": "x" * 100}}] * 3
    status, body = await post(http, url + BATCH, batch(*items))
    assert status == 413
    assert body["error"]["type"] == "PayloadTooLarge"


async def test_an_item_refused_by_the_security_filter_gets_its_own_error(nexus_server, http):
    url = await nexus_server(make_app())
    status, body = await post(
        http,
        url + BATCH,
        batch(
            {"name": "echo", "inputs": {"param": "ok"}},
            {"name": "echo", "inputs": {"param": "x", "__proto__": {"admin": True}}},
            {"name": "echo", "inputs": {"param": "ok"}, "mode": "async"},
        ),
    )
    assert status == 200
    ok, refused, unknown = body["results"]
    assert ok["success"] is True
    assert refused["status_code"] == 400 and refused["error"]["type"] == "SecurityError"
    assert unknown["status_code"] == 400 and unknown["error"]["details"]["field"] == "mode"


async def test_items_run_with_at_most_batch_concurrency_at_once(nexus_server, http):
    app = make_app(batch_concurrency=3)
    state = {"running": 0, "peak": 0}

    @app.workflow()
    async def probe(n: int) -> int:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        for _ in range(5):  # yield to the loop so the other workers get to start
            await asyncio.sleep(0)
        state["running"] -= 1
        return n

    url = await nexus_server(app)
    items = [{"name": "probe", "inputs": {"n": i}} for i in range(10)]
    status, body = await post(http, url + BATCH, batch(*items))
    assert status == 200
    assert [r["result"] for r in body["results"]] == list(range(10))
    assert state["peak"] == 3


async def test_a_timed_out_item_does_not_stop_the_others(nexus_server, http):
    app = make_app()
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    app.register("hang", hang, timeout=0.05)
    url = await nexus_server(app)
    _, body = await post(
        http,
        url + BATCH,
        batch({"name": "hang"}, {"name": "sum", "inputs": {"a": 1, "b": 1}}, {"name": "hang"}),
    )
    assert [r["status_code"] for r in body["results"]] == [504, 200, 504]
    assert body["results"][0]["error"]["type"] == "Timeout"


async def test_items_sharing_a_session_run_one_after_the_other(nexus_server, http):
    url = await nexus_server(make_app())
    sid = "batch-session-1"
    items = [{"name": "counter", "inputs": {"step": 1}, "session_id": sid}] * 4
    _, body = await post(http, url + BATCH, batch(*items))
    assert sorted(r["result"] for r in body["results"]) == [1, 2, 3, 4]
    assert {r["session_id"] for r in body["results"]} == {sid}


async def test_a_rejected_item_is_recorded_under_the_workflow_id_it_reports(nexus_server, http):
    url = await nexus_server(make_app())
    _, body = await post(http, url + BATCH, batch({"name": "sum", "inputs": {"a": 1}}))
    wid = body["results"][0]["workflow_id"]
    assert wid.startswith("wf-")
    async with http.get(f"{url}/executions/{wid}") as resp:
        assert resp.status == 200
        record = await resp.json()
    assert record["status"] == "failed"
    assert record["error"]["type"] == "ValidationError"


class HeaderAuth:
    """A test plugin: ``X-User`` names the actor; ``X-Deny`` lists workflows it may not run."""

    @hookimpl
    def actor_from_request(self, nexus: Any, request: Any) -> Any:
        user = request.headers.get("X-User")
        if user is None:
            return None
        return {"id": user, "deny": request.headers.get("X-Deny", "").split(",")}

    @hookimpl
    def permission_allowed(self, nexus: Any, actor: Any, action: str, resource: Any) -> Any:
        if actor is None:
            return False
        if action == "batch":
            return "batch" not in actor["deny"]
        if action == "execute":
            return resource not in actor["deny"]
        return None


async def test_each_item_is_authorized_like_a_single_execution(nexus_server, http):
    url = await nexus_server(make_app(plugins=[HeaderAuth()]))
    body = batch({"name": "sum", "inputs": {"a": 1, "b": 1}}, {"name": "fail"})
    async with http.post(url + BATCH, json=body, headers={"X-User": "u", "X-Deny": "fail"}) as r:
        assert r.status == 200
        answer = await r.json()
    ok, refused = answer["results"]
    assert ok["success"] is True
    assert refused["status_code"] == 403
    assert refused["error"]["type"] == "Forbidden"
    assert refused["workflow_id"] is None
    assert (answer["succeeded"], answer["failed"]) == (1, 1)


async def test_the_batch_itself_is_authorized(nexus_server, http):
    url = await nexus_server(make_app(plugins=[HeaderAuth()]))
    body = batch({"name": "sum", "inputs": {"a": 1, "b": 1}})
    async with http.post(url + BATCH, json=body) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    async with http.post(url + BATCH, json=body, headers={"X-User": "u", "X-Deny": "batch"}) as r:
        assert r.status == 403


async def test_each_item_is_rate_limited_like_a_single_execution(nexus_server, http):
    app: Nexus = make_app()

    async def limited(n: int) -> int:
        return n

    app.register("limited", limited, rate_limit=2)
    url = await nexus_server(app)
    items = [{"name": "limited", "inputs": {"n": i}} for i in range(3)]
    _, body = await post(http, url + BATCH, {"workflows": [*items, {"name": "echo"}]})
    codes = [r["status_code"] for r in body["results"]]
    assert sorted(codes[:3]) == [200, 200, 429]
    refused = body["results"][codes.index(429)]
    assert refused["error"]["type"] == "RateLimitExceeded"
    assert refused["error"]["details"]["limit"] == 2
    assert codes[3] == 400  # echo without its input: no limit, validation error
    # The same bucket as single executions: it is now empty for this client.
    async with http.post(f"{url}/workflows/limited/execute", json={"inputs": {"n": 1}}) as resp:
        assert resp.status == 429
