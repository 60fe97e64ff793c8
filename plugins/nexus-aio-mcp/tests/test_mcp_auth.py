"""Auth on the MCP channel: the same actor and permission hooks as HTTP, RFC 9728 on refusal."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import jwt
import pytest
from conftest import APP, HERE, mcp_session

from nexus_aio.testing import ServerProcess

KEY = "mcp-test-key-0123456789"
SECRET = "mcp-test-jwt-secret-of-32-bytes!!"


def token(scope: str) -> str:
    claims = {"sub": "agent-7", "scope": scope, "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {
        "NEXUS_ENABLE_AUTH": "1",
        "NEXUS_AUTH_API_KEYS": KEY,
        "NEXUS_AUTH_JWT_SECRET": SECRET,
        "NEXUS_MCP_AUTHORIZATION_SERVERS": "https://auth.example",
    }
    with ServerProcess(["serve", "--app", APP], cwd=HERE, env=env) as srv:
        yield srv


async def test_without_credentials_401_names_the_protected_resource_metadata(server):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/mcp", json={"jsonrpc": "2.0", "id": 1}) as resp:
            assert resp.status == 401
            challenge = resp.headers["WWW-Authenticate"]
            assert (await resp.json())["error"]["type"] == "Unauthorized"
        metadata_url = f"{server.url}/.well-known/oauth-protected-resource"
        assert challenge == f'Bearer resource_metadata="{metadata_url}"'
        async with http.get(metadata_url) as resp:  # public, as RFC 9728 wants
            assert resp.status == 200
            metadata = await resp.json()
        async with http.get(f"{server.url}/workflows") as resp:  # other routes: as before
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert metadata == {
        "resource": f"{server.url}/mcp",
        "resource_name": "nexus_aio MCP",
        "bearer_methods_supported": ["header"],
        "authorization_servers": ["https://auth.example"],
    }


async def test_the_sdk_client_without_a_key_is_refused(server):
    statuses: list[int] = []
    with pytest.raises(BaseExceptionGroup):  # the SDK's task groups raise its MCPError
        async with mcp_session(server.url, statuses=statuses) as mcp:
            await mcp.list_tools()
    assert statuses == [401]


async def test_with_a_key_tools_are_listed_and_called_as_that_actor(server):
    async with mcp_session(server.url, headers={"Authorization": f"Bearer {KEY}"}) as mcp:
        names = {tool.name for tool in (await mcp.list_tools()).tools}
        result = await mcp.call_tool("add", {"a": 20, "b": 22})
    assert {"add", "boom", "steps", "nexus.start"} <= names
    assert result.structured_content["result"] == 42
    run_id = result.structured_content["workflow_id"]
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{server.url}/executions/{run_id}") as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["status"] == "succeeded"


async def test_tools_the_actor_may_not_execute_are_not_listed_nor_callable(server):
    headers = {"Authorization": f"Bearer {token('execute:add read')}"}
    async with mcp_session(server.url, headers=headers) as mcp:
        names = sorted(tool.name for tool in (await mcp.list_tools()).tools)
        allowed = await mcp.call_tool("add", {"a": 1})
        refused = await mcp.call_tool("boom", {})
        refused_start = await mcp.call_tool("nexus.start", {"workflow": "boom"})
        started = await mcp.call_tool("nexus.start", {"workflow": "wait", "inputs": {}})
    assert names == ["add", "nexus.cancel", "nexus.start", "nexus.status"]
    assert allowed.structured_content["result"] == 1
    assert refused.is_error and refused.structured_content["error"]["type"] == "Forbidden"
    assert refused_start.structured_content["error"]["type"] == "Forbidden"
    assert started.structured_content["error"]["type"] == "Forbidden"


async def test_a_run_belongs_to_the_actor_that_started_it(server):
    owner = {"Authorization": f"Bearer {token('execute:* read write')}"}
    other = {"Authorization": f"Bearer {KEY}"}
    async with mcp_session(server.url, headers=owner) as mcp:
        started = await mcp.call_tool("nexus.start", {"workflow": "add", "inputs": {"a": 1}})
    run_id = started.structured_content["workflow_id"]
    async with mcp_session(server.url, headers=other) as mcp:
        seen = await mcp.call_tool("nexus.status", {"workflow_id": run_id})
    assert seen.is_error and seen.structured_content["error"]["type"] == "Forbidden"
