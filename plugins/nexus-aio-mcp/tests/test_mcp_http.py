"""The MCP channel over real HTTP: the SDK's own client against ``python -m nexus_aio serve``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from conftest import APP, HERE, mcp_session

from nexus_aio.testing import ServerProcess

ALLOWED_ORIGIN = "https://app.example"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"NEXUS_ENABLE_CORS": "1", "NEXUS_CORS_ORIGINS": ALLOWED_ORIGIN}
    with ServerProcess(["serve", "--app", APP], cwd=HERE, env=env) as srv:
        yield srv


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


def text_of(result: Any) -> Any:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return json.loads(result.content[0].text)


async def test_plugin_is_listed_by_get_plugins_with_version_and_hooks(server):
    status, body = await get_json(f"{server.url}/plugins")
    assert status == 200
    plugin = next(p for p in body["plugins"] if p["name"] == "mcp")
    assert plugin["version"] == "0.1.0"
    assert plugin["builtin"] is False
    assert plugin["hooks"] == [
        "handle_exception",
        "register_cleanup_ctx",
        "register_commands",
        "register_routes",
        "register_settings",
    ]


async def test_tools_are_the_workflows_with_the_openapi_input_schema_then_lifecycle_tools(server):
    _, openapi = await get_json(f"{server.url}/openapi.json")
    components = openapi["components"]["schemas"]
    async with mcp_session(server.url) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert sorted(tools) == [
        "add",
        "boom",
        "limited",
        "nexus.cancel",
        "nexus.start",
        "nexus.status",
        "pid",
        "remember",
        "steps",
        "text_stats",
        "too_slow",
        "wait",
    ]
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.input_schema == components["AddInputs"]
    assert add.output_schema["properties"]["result"] == {"type": "integer"}
    assert add.output_schema["required"] == ["success", "result", "workflow_id"]
    stats = tools["text_stats"]  # "text stats", sanitised; its own name is the title
    assert stats.title == "text stats"
    assert stats.input_schema == components["TextStatsInputs"]
    assert stats.output_schema is None  # no return annotation
    assert tools["nexus.start"].input_schema["required"] == ["workflow"]


async def test_a_call_answers_structured_content_and_a_json_text_block_and_is_recorded(server):
    async with mcp_session(server.url) as mcp:
        result = await mcp.call_tool("add", {"a": 2, "b": 3})
    assert result.is_error is False
    body = result.structured_content
    assert body["success"] is True and body["result"] == 5
    assert text_of(result) == body
    status, record = await get_json(f"{server.url}/executions/{body['workflow_id']}")
    assert status == 200
    assert (record["name"], record["status"], record["result"]) == ("add", "succeeded", 5)
    assert record["inputs"] == {"a": 2, "b": 3}


async def test_input_errors_failures_timeouts_and_unknown_tools_are_tool_errors(server):
    async with mcp_session(server.url) as mcp:
        invalid = await mcp.call_tool("add", {"a": "x"})
        failed = await mcp.call_tool("boom", {"message": "kaput"})
        timed_out = await mcp.call_tool("too_slow", {})
        unknown = await mcp.call_tool("nope", {})
    for result in (invalid, failed, timed_out, unknown):
        assert result.is_error is True
        assert text_of(result) == result.structured_content
        assert "Traceback" not in result.content[0].text
    assert invalid.structured_content["error"]["type"] == "ValidationError"
    assert invalid.structured_content["error"]["details"]["field"] == "a"
    assert failed.structured_content["error"] == {
        "type": "WorkflowExecutionError",
        "message": "kaput",
        "details": {"exception": "RuntimeError"},
    }
    assert timed_out.structured_content["error"]["type"] == "Timeout"
    assert unknown.structured_content["error"]["type"] == "WorkflowNotFound"
    _, record = await get_json(
        f"{server.url}/executions/{failed.structured_content['workflow_id']}"
    )
    assert record["status"] == "failed" and record["error"]["message"] == "kaput"


async def test_progress_becomes_progress_notifications_and_events_log_notifications(server):
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(params: Any) -> None:
        logs.append(params)

    async with mcp_session(server.url, logging_callback=on_log) as mcp:
        result = await mcp.call_tool("steps", {"count": 3}, progress_callback=on_progress)
    assert result.structured_content["result"] == {"steps": 3}
    assert [p[0] for p in progress] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert {p[1] for p in progress} == {1.0}
    assert [p[2] for p in progress] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert [entry.data for entry in logs] == [
        {"event": "step", "data": {"index": i}} for i in range(3)
    ]
    assert {entry.logger for entry in logs} == {"nexus_aio.steps"}


async def test_start_status_and_cancel_drive_a_long_run_seen_in_executions(server):
    async with mcp_session(server.url) as mcp:
        started = await mcp.call_tool(
            "nexus.start", {"workflow": "wait", "inputs": {"seconds": 30}}
        )
        run_id = started.structured_content["workflow_id"]
        assert started.structured_content["status"] in ("queued", "running")
        status = await mcp.call_tool("nexus.status", {"workflow_id": run_id, "wait": 0.05})
        assert status.structured_content["status"] in ("queued", "running")
        _, record = await get_json(f"{server.url}/executions/{run_id}")
        assert (record["mode"], record["name"]) == ("async", "wait")
        cancelled = await mcp.call_tool("nexus.cancel", {"workflow_id": run_id})
        assert cancelled.structured_content["status"] == "cancelled"
        again = await mcp.call_tool("nexus.cancel", {"workflow_id": run_id})
        missing = await mcp.call_tool("nexus.status", {"workflow_id": "wf-nope"})
        too_long = await mcp.call_tool("nexus.status", {"workflow_id": run_id, "wait": 61})
    assert again.is_error and again.structured_content["error"]["type"] == "Conflict"
    assert missing.is_error and missing.structured_content["error"]["type"] == "ExecutionNotFound"
    assert too_long.is_error and too_long.structured_content["error"]["type"] == "ValidationError"
    _, record = await get_json(f"{server.url}/executions/{run_id}")
    assert record["status"] == "cancelled"


async def test_status_waits_for_the_result_of_a_started_run(server):
    async with mcp_session(server.url) as mcp:
        started = await mcp.call_tool("nexus.start", {"workflow": "add", "inputs": {"a": 1}})
        run_id = started.structured_content["workflow_id"]
        done = await mcp.call_tool("nexus.status", {"workflow_id": run_id, "wait": 10})
        bad = await mcp.call_tool("nexus.start", {"workflow": "add", "inputs": {"a": "x"}})
        nowhere = await mcp.call_tool("nexus.start", {"workflow": "nope"})
    assert done.structured_content["status"] == "succeeded"
    assert done.structured_content["result"] == 1
    assert bad.is_error and bad.structured_content["error"]["type"] == "ValidationError"
    assert nowhere.is_error and nowhere.structured_content["error"]["type"] == "WorkflowNotFound"


async def test_start_honours_idempotency_keys_and_sessions(server):
    async with mcp_session(server.url) as mcp:
        args = {"workflow": "add", "inputs": {"a": 7}, "idempotency_key": "k-1"}
        first = await mcp.call_tool("nexus.start", args)
        second = await mcp.call_tool("nexus.start", args)
        conflict = await mcp.call_tool("nexus.start", {**args, "inputs": {"a": 8}})
        assert second.structured_content["workflow_id"] == first.structured_content["workflow_id"]
        assert second.structured_content["replayed"] is True
        assert "replayed" not in first.structured_content
        assert conflict.structured_content["error"]["type"] == "IdempotencyConflict"

        results = []
        for value in ("a", "b"):
            started = await mcp.call_tool(
                "nexus.start",
                {"workflow": "remember", "inputs": {"value": value}, "session_id": "mcp-s1"},
            )
            assert started.structured_content["session_id"] == "mcp-s1"
            run_id = started.structured_content["workflow_id"]
            done = await mcp.call_tool("nexus.status", {"workflow_id": run_id, "wait": 10})
            results.append(done.structured_content["result"])
    assert results == [["a"], ["a", "b"]]


async def test_the_per_workflow_rate_limit_applies_per_tool_call(server):
    async with mcp_session(server.url) as mcp:
        answers = [await mcp.call_tool("limited", {}) for _ in range(3)]
    assert [a.is_error for a in answers] == [False, False, True]
    error = answers[2].structured_content["error"]
    assert error["type"] == "RateLimitExceeded" and error["details"]["limit"] == 2


async def post_initialize(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


async def test_a_foreign_origin_is_refused_and_the_own_or_a_cors_allowed_one_served(server):
    status, _, text = await post_initialize(server.url, {"Origin": "https://evil.example"})
    assert status == 403
    assert json.loads(text)["error"]["type"] == "Forbidden"
    for origin in (ALLOWED_ORIGIN, server.url):
        status, headers, text = await post_initialize(server.url, {"Origin": origin})
        assert status == 200, text
        assert "Mcp-Session-Id" not in headers  # stateless


async def test_no_session_id_is_needed_between_requests(server):
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/mcp",
            json=tools_list,
            headers={**MCP_HEADERS, "MCP-Protocol-Version": "2025-06-18"},
        ) as resp,
    ):
        assert resp.status == 200
        body = await resp.text()
    assert '"name":"add"' in body.replace(" ", "")


async def test_a_client_of_the_2026_protocol_is_served_without_a_handshake(server):
    from mcp import Client

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(f"{server.url}/mcp", mode="2026-07-28") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("add", {"a": 1, "b": 1})
        steps = await client.call_tool("steps", {"count": 2}, progress_callback=on_progress)
        failed = await client.call_tool("boom", {})
    assert {"add", "nexus.start"} <= names
    assert result.structured_content["result"] == 2
    assert steps.structured_content["result"] == {"steps": 2}
    assert progress == [0.5, 1.0]
    assert (
        failed.is_error and failed.structured_content["error"]["type"] == "WorkflowExecutionError"
    )


async def test_the_server_log_has_one_access_line_per_mcp_request_not_the_sdks_chatter(server):
    async with mcp_session(server.url) as mcp:
        await mcp.call_tool("add", {"a": 1})
    output = server.read_output()
    assert "POST /mcp" in output
    assert "Terminating session" not in output
