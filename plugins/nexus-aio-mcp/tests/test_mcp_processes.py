"""The channel across processes: ``serve --workers 2`` (stateless: any worker answers any call)
and stdio through the SDK's stdio client; and ``enable_mcp`` off."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TextIO

import aiohttp
import pytest
from conftest import APP, HERE, mcp_session
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from nexus_aio import Nexus
from nexus_aio.testing import ServerProcess


async def test_two_workers_both_serve_calls_and_share_runs(tmp_path):
    env = {"NEXUS_DATABASE": str(tmp_path / "nexus.db")}
    with ServerProcess(["serve", "--app", APP, "--workers", "2"], cwd=HERE, env=env) as server:
        pids: set[int] = set()
        for _ in range(40):  # a new client (connection) per call: the kernel picks a worker
            async with mcp_session(server.url) as mcp:
                pids.add((await mcp.call_tool("pid", {})).structured_content["result"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        # A run started through one connection is read back through fresh ones (any worker).
        async with mcp_session(server.url) as mcp:
            started = await mcp.call_tool("nexus.start", {"workflow": "add", "inputs": {"a": 4}})
        run_id = started.structured_content["workflow_id"]
        for _ in range(4):
            async with mcp_session(server.url) as mcp:
                done = await mcp.call_tool("nexus.status", {"workflow_id": run_id, "wait": 10})
            assert done.structured_content["status"] == "succeeded"
            assert done.structured_content["result"] == 4
    out = server.stop()
    assert "started 2 workers" in out


@pytest.fixture
def errlog() -> Iterator[TextIO]:
    """Where the stdio server's stderr goes (a real file: the SDK hands it to the child)."""
    with open(os.devnull, "w") as devnull:
        yield devnull


async def test_stdio_serves_the_same_tools_through_the_sdk_stdio_client(errlog):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nexus_aio", "mcp", "--app", APP],
        cwd=HERE,
        env={"NEXUS_DATABASE": ":memory:"},
    )
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        names = {tool.name for tool in (await mcp.list_tools()).tools}
        result = await mcp.call_tool("add", {"a": 5, "b": 6})
        failed = await mcp.call_tool("boom", {})
        started = await mcp.call_tool("nexus.start", {"workflow": "add", "inputs": {"a": 1}})
        run_id = started.structured_content["workflow_id"]
        done = await mcp.call_tool("nexus.status", {"workflow_id": run_id, "wait": 10})
    assert {"add", "text_stats", "nexus.start"} <= names
    assert result.structured_content["result"] == 11
    assert (
        failed.is_error and failed.structured_content["error"]["type"] == "WorkflowExecutionError"
    )
    assert done.structured_content["result"] == 1


async def test_with_enable_mcp_off_the_endpoint_and_metadata_are_404(nexus_server):
    url = await nexus_server(Nexus(database=":memory:"))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1}) as resp:
            assert resp.status == 404
        async with http.get(f"{url}/.well-known/oauth-protected-resource") as resp:
            assert resp.status == 404
        async with http.get(f"{url}/plugins") as resp:  # installed and listed all the same
            assert "mcp" in {p["name"] for p in (await resp.json())["plugins"]}
