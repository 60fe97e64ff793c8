"""Schema, list and health routes over real HTTP."""

from __future__ import annotations

from nexus_aio.testing import make_app


async def get(http, url):
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def test_schema_in_the_spec_format(nexus_server, http):
    url = await nexus_server(make_app())
    status, data = await get(http, f"{url}/workflows/greet/schema")
    assert status == 200
    assert data["name"] == "greet"
    assert data["description"] == "Greet someone."
    assert data["inputs"]["name"] == {"type": "string", "required": True}
    assert data["inputs"]["greeting"]["type"] == "string"
    assert data["inputs"]["greeting"]["default"] == "Hello"
    assert data["inputs"]["greeting"]["required"] is False
    assert "outputs" in data


async def test_schema_of_unknown_workflow_is_404(nexus_server, http):
    url = await nexus_server(make_app())
    status, data = await get(http, f"{url}/workflows/nope/schema")
    assert status == 404 and data["error"]["type"] == "WorkflowNotFound"


async def test_list_workflows_names_inputs_and_endpoints(nexus_server, http):
    app = make_app(api_prefix="/v2")
    url = await nexus_server(app)
    status, data = await get(http, f"{url}/workflows")
    assert status == 200
    assert set(data) == set(app.workflows)
    entry = data["sum"]
    assert entry["name"] == "sum"
    assert entry["description"] == "Add two integers."
    assert set(entry["inputs"]) == {"a", "b"}
    assert "/v2/workflows/sum/execute" in entry["endpoints"]
    assert data["text-stats"]["kind"] == "dag"


async def test_health_reports_status_version_uptime_workflows_sessions(nexus_server, http):
    app = make_app()
    url = await nexus_server(app)
    status, data = await get(http, f"{url}/health")
    assert status == 200
    assert data["status"] == "healthy"
    assert data["version"]
    assert data["uptime"] >= 0
    assert data["workflows"] == len(app.workflows)
    assert data["active_sessions"] == 0
    async with http.post(
        f"{url}/workflows/counter/execute",
        json={"inputs": {}},
        headers={"X-Session-ID": "s-health"},
    ) as resp:
        assert resp.status == 200
    _, data = await get(http, f"{url}/health")
    assert data["active_sessions"] == 1


async def test_health_detailed_lists_components(nexus_server, http):
    url = await nexus_server(make_app())
    status, data = await get(http, f"{url}/health/detailed")
    assert status == 200
    assert data["status"] == "healthy"
    assert data["components"]["api"]["status"] == "healthy"
    assert data["components"]["database"]["status"] == "healthy"


async def test_plugins_lists_builtin_plugins(nexus_server, http):
    url = await nexus_server(make_app())
    status, data = await get(http, f"{url}/plugins")
    assert status == 200
    names = {p["name"] for p in data["plugins"]}
    assert "nexus_aio.builtin.core_routes" in names
    core = next(p for p in data["plugins"] if p["name"] == "nexus_aio.builtin.core_routes")
    assert core["hooks"] == ["register_routes"] and core["version"]
