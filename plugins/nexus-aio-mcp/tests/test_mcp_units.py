"""The plugin's parts one by one: tool names and schemas, the catalog, the Origin rule, the
ASGI bridge (over real sockets) and each hook implementation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import aiohttp
import nexus_aio_mcp
import pytest
from aiohttp import web
from nexus_aio_mcp.asgi import serve_asgi
from nexus_aio_mcp.tools import Catalog, output_schema, tool_name

from nexus_aio import Nexus, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.web.keys import REQUEST_ID


# -- names and schemas ------------------------------------------------------------------------
def test_tool_names_keep_safe_characters_and_replace_the_rest():
    assert tool_name("sum") == "sum"
    assert tool_name("text-stats.v2_x") == "text-stats.v2_x"
    assert tool_name("word count") == "word_count"
    assert tool_name("héllo wörld!") == "h_llo_w_rld_"
    assert len(tool_name("x" * 300)) == 128


def test_output_schema_wraps_a_known_return_type_in_the_success_envelope():
    assert output_schema({"result": {}}) is None
    assert output_schema({}) is None
    schema = output_schema({"result": {"type": "integer"}})
    assert schema is not None and schema["type"] == "object"
    assert schema["properties"]["result"] == {"type": "integer"}
    assert schema["properties"]["success"] == {"const": True}


async def _noop() -> None:
    return None


def test_the_catalog_names_each_workflow_and_publishes_its_json_schema():
    app = Nexus(database=":memory:", load_entry_points=False)

    async def greet(name: str, loud: bool = False) -> str:
        """Say hello."""
        return name

    app.register("say hello", greet)
    catalog = Catalog.build(app)
    assert catalog.workflows == {"say_hello": "say hello"}
    tool = catalog.tools["say_hello"]
    assert tool.input_schema == app.workflows["say hello"].schema.json_schema()
    assert tool.input_schema["additionalProperties"] is False
    assert tool.description == "Say hello."
    assert tool.output_schema["properties"]["result"] == {"type": "string"}


@pytest.mark.parametrize(
    "names", [("a b", "a_b"), ("nexus.start",), ("x/y".replace("/", "?"), "x_y")]
)
def test_two_workflows_on_one_tool_name_fail_startup(names):
    app = Nexus(database=":memory:", enable_mcp=True, plugins=[nexus_aio_mcp])
    for name in names:
        app.register(name, _noop)
    with pytest.raises(ConfigurationError, match="taken twice"):
        app.create_app()


def test_a_catalog_without_collisions_builds_with_the_app():
    app = Nexus(database=":memory:", enable_mcp=True, plugins=[nexus_aio_mcp])
    app.register("a b", _noop)
    app.register("c", _noop)
    app.create_app()
    assert nexus_aio_mcp.channel_for(app).catalog.workflows == {"a_b": "a b", "c": "c"}


# -- hooks --------------------------------------------------------------------------------------
def test_register_settings_declares_the_switch_off_by_default(monkeypatch):
    assert {s.name for s in nexus_aio_mcp.register_settings(None)} == {
        "enable_mcp",
        "mcp_authorization_servers",
    }
    assert Nexus(database=":memory:").settings.enable_mcp is False
    monkeypatch.setenv("NEXUS_ENABLE_MCP", "1")
    monkeypatch.setenv("NEXUS_MCP_AUTHORIZATION_SERVERS", "https://a.example,https://b.example")
    settings = Nexus(database=":memory:").settings
    assert settings.enable_mcp is True
    assert settings.mcp_authorization_servers == ["https://a.example", "https://b.example"]


def test_register_routes_and_cleanup_ctx_add_nothing_while_off():
    off = Nexus(database=":memory:")
    assert nexus_aio_mcp.register_routes(off) == []
    assert nexus_aio_mcp.register_cleanup_ctx(off) is None
    assert nexus_aio_mcp.nexus_active(off) is False
    on = Nexus(database=":memory:", enable_mcp=True)
    routes = {(r.method, r.path) for r in nexus_aio_mcp.register_routes(on)}  # type: ignore[attr-defined]
    assert ("POST", "/mcp") in routes
    assert ("GET", "/.well-known/oauth-protected-resource") in routes
    assert len(nexus_aio_mcp.register_cleanup_ctx(on) or []) == 1


async def test_only_post_is_served_stateless_has_no_get_stream_nor_delete(nexus_server):
    url = await nexus_server(Nexus(database=":memory:", enable_mcp=True))
    async with aiohttp.ClientSession() as http:
        for method in ("GET", "DELETE"):
            headers = {"Accept": "text/event-stream"}
            async with http.request(method, f"{url}/mcp", headers=headers) as resp:
                assert resp.status == 405, method
                assert (await resp.json())["error"]["type"] == "MethodNotAllowed"


async def test_handle_exception_leaves_other_paths_and_errors_alone(nexus_server):
    url = await nexus_server(
        Nexus(database=":memory:", enable_mcp=True, enable_auth=True, auth_api_keys=["k" * 16])
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/workflows") as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        async with http.post(f"{url}/mcp", headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
            assert "resource_metadata=" in resp.headers["WWW-Authenticate"]
        async with http.get(f"{url}/.well-known/oauth-protected-resource") as resp:
            assert resp.status == 200
            assert (await resp.json())["resource"] == f"{url}/mcp"
            assert "authorization_servers" not in await resp.json()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexus_aio", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NEXUS_DATABASE": ":memory:", **env},
    )


def test_register_commands_adds_mcp_unless_the_plugin_is_disabled():
    listed = _cli("--help")
    assert listed.returncode == 0 and "mcp " in listed.stdout
    helped = _cli("mcp", "--help")
    assert helped.returncode == 0 and "--app" in helped.stdout
    disabled = _cli("mcp", "--help", NEXUS_DISABLE_PLUGINS="mcp")
    assert disabled.returncode == 2 and "invalid choice" in disabled.stderr


# -- Origin --------------------------------------------------------------------------------------
async def _status(url: str, origin: str | None) -> int:
    headers = {"Accept": "application/json, text/event-stream"}
    if origin is not None:
        headers["Origin"] = origin
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/mcp", json=body, headers=headers) as resp,
    ):
        return resp.status


async def test_origin_rule_without_cors_only_the_servers_own_origin(nexus_server):
    url = await nexus_server(Nexus(database=":memory:", enable_mcp=True))
    assert await _status(url, None) == 200
    assert await _status(url, url) == 200
    assert await _status(url, url.upper().replace("HTTP", "http")) == 200  # case-insensitive
    assert await _status(url, "http://localhost:1") == 403
    assert await _status(url, "null") == 403


async def test_origin_rule_with_cors_any_origin_allows_every_origin(nexus_server):
    url = await nexus_server(Nexus(database=":memory:", enable_mcp=True, enable_cors=True))
    assert await _status(url, "https://anything.example") == 200


# -- the ASGI bridge ----------------------------------------------------------------------------
def _bridge_app(asgi_app: Any) -> Nexus:
    class Bridge:
        @hookimpl
        def register_routes(self, nexus: Any) -> list[web.RouteDef]:
            async def handler(request: web.Request) -> web.StreamResponse:
                return await serve_asgi(asgi_app, request, {"extra": "value"})

            return [web.post("/asgi", handler)]

    return Nexus(database=":memory:", load_entry_points=False, plugins=[Bridge()])


async def test_bridge_passes_scope_body_and_a_single_message_answer(nexus_server):
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["first"] = await receive()
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"done"})
        seen["after"] = await receive()

    url = await nexus_server(_bridge_app(app))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/asgi?q=1", data=b"payload", headers={"X-Test": "t"}) as resp,
    ):
        assert resp.status == 201
        assert await resp.read() == b"done"
        assert resp.headers["X-A"] == "1"
        assert resp.headers["X-Request-ID"].startswith("req-")  # still added by the core
    scope = seen["scope"]
    assert (scope["type"], scope["method"], scope["path"]) == ("http", "POST", "/asgi")
    assert scope["query_string"] == b"q=1" and scope["extra"] == "value"
    assert (b"x-test", b"t") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert seen["first"] == {"type": "http.request", "body": b"payload", "more_body": False}
    assert seen["after"] == {"type": "http.disconnect"}


async def test_bridge_streams_a_multi_message_answer_as_it_comes(nexus_server):
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"one\n", "more_body": True})
        await gate.wait()  # the client has read "one" before the app goes on
        await send({"type": "http.response.body", "body": b"two\n", "more_body": False})

    url = await nexus_server(_bridge_app(app))
    async with aiohttp.ClientSession() as http, http.post(f"{url}/asgi") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["X-Request-ID"].startswith("req-")
        assert await resp.content.readline() == b"one\n"
        gate.set()
        assert await resp.content.readline() == b"two\n"
        assert await resp.content.read() == b""


async def test_bridge_closes_a_stream_the_app_leaves_open(nexus_server):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})

    url = await nexus_server(_bridge_app(app))
    async with aiohttp.ClientSession() as http, http.post(f"{url}/asgi") as resp:
        assert await resp.read() == b"partial"


async def test_bridge_without_an_answer_is_a_500_envelope(nexus_server):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    url = await nexus_server(_bridge_app(app))
    async with aiohttp.ClientSession() as http, http.post(f"{url}/asgi") as resp:
        assert resp.status == 500
        assert (await resp.json())["error"]["message"] == "The MCP transport sent no response"
    assert REQUEST_ID  # the bridge reads the core's request id key
