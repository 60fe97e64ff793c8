"""The OpenAPI document: valid, per-workflow schemas, api_prefix, the docs switch, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp
from aiohttp import web
from marshmallow import Schema, fields
from openapi_spec_validator import validate

from nexus_aio import Nexus, Query, hookimpl
from nexus_aio.openapi import add_responses, error_responses
from nexus_aio.openapi.document import build_openapi
from nexus_aio.testing import make_app, plugin_installed


class OrderSchema(Schema):
    item = fields.String(required=True)
    quantity = fields.Integer(load_default=1)


ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _schema(doc: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    name = ref["$ref"].rsplit("/", 1)[1]
    schema: dict[str, Any] = doc["components"]["schemas"][name]
    return schema


async def fetch(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_served_document_passes_openapi_spec_validator(nexus_server, http):
    url = await nexus_server(make_app())
    doc = await fetch(http, f"{url}/openapi.json")
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "nexus_aio"


async def test_each_workflow_has_its_own_request_and_response_schema(nexus_server, http):
    url = await nexus_server(make_app())
    doc = await fetch(http, f"{url}/openapi.json")
    post = doc["paths"]["/workflows/greet/execute"]["post"]
    request = _schema(doc, post["requestBody"]["content"]["application/json"]["schema"])
    inputs = _schema(doc, request["properties"]["inputs"])
    assert inputs["required"] == ["name"]
    assert inputs["properties"]["name"] == {"type": "string"}
    assert inputs["properties"]["greeting"] == {"type": "string", "default": "Hello"}
    assert inputs["properties"]["punctuation"]["enum"] == ["!", "."]
    assert inputs["additionalProperties"] is False
    summed = _schema(
        doc,
        doc["paths"]["/workflows/sum/execute"]["post"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"],
    )
    assert summed["properties"]["result"] == {"type": "integer"}
    sum_request = _schema(
        doc,
        doc["paths"]["/workflows/sum/execute"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"],
    )
    sum_inputs = _schema(doc, sum_request["properties"]["inputs"])
    assert sum_inputs["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    responses = post["responses"]
    for status in ("202", "400", "404", "413", "422", "500", "503", "504"):
        assert status in responses, status
    assert responses["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorEnvelope"
    }
    assert "Retry-After" in responses["503"]["headers"]
    assert "text/event-stream" in responses["200"]["content"]
    assert "401" not in responses  # no auth plugin enabled


async def test_core_execution_session_and_batch_routes_are_documented(nexus_server, http):
    url = await nexus_server(make_app())
    paths = (await fetch(http, f"{url}/openapi.json"))["paths"]
    for path, method in [
        ("/workflows/{name}/schema", "get"),
        ("/workflows", "get"),
        ("/health", "get"),
        ("/health/detailed", "get"),
        ("/plugins", "get"),
        ("/executions", "get"),
        ("/executions/{execution_id}", "get"),
        ("/executions/{execution_id}", "delete"),
        ("/executions/{execution_id}/events", "get"),
        ("/sessions/{session_id}", "get"),
        ("/sessions/{session_id}", "delete"),
    ]:
        assert method in paths.get(path, {}), (method, path)
    # the batch route exists (and is documented, by its plugin) exactly when it is installed
    assert ("post" in paths.get("/workflows/batch", {})) is plugin_installed("batch")
    if plugin_installed("batch"):
        responses = paths["/workflows/batch"]["post"]["responses"]
        for status in ("400", "413", "429"):
            assert responses[status]["content"]["application/json"]["schema"] == ENVELOPE
    limit = next(p for p in paths["/executions"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500
    assert "/docs" not in paths and "/docs/static/{filename}" not in paths


def test_document_follows_api_prefix():
    app = make_app(api_prefix="/api/v1")
    doc = build_openapi(app)
    validate(doc)
    assert "/api/v1/workflows/sum/execute" in doc["paths"]
    assert "/api/v1/health" in doc["paths"]
    assert not any(p.startswith("/workflows") for p in doc["paths"])


async def test_docs_page_and_assets_are_served_under_the_prefix(nexus_server, http):
    url = await nexus_server(make_app(api_prefix="/api/v1"))
    async with http.get(f"{url}/docs") as resp:
        assert resp.status == 200
        html = await resp.text()
    assert '"/api/v1/openapi.json"' in html
    assert "/api/v1/docs/static/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    async with http.get(f"{url}/docs/static/swagger-ui-bundle.js") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/javascript"
        assert len(await resp.read()) > 100_000
    async with http.get(f"{url}/docs/static/..%2F__init__.py") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["type"] == "NotFound"


async def test_enable_docs_false_removes_docs_and_openapi_json(nexus_server, http):
    url = await nexus_server(make_app(enable_docs=False))
    for path in ("/docs", "/openapi.json", "/docs/static/swagger-ui.css"):
        async with http.get(url + path) as resp:
            assert resp.status == 404, path


def test_custom_endpoint_metadata_becomes_parameters_with_constraints():
    async def handler(request: web.Request) -> web.Response:
        """Find orders.

        Longer text.
        """
        return web.json_response({})

    handler.nexus_endpoint = {  # type: ignore[attr-defined]
        "path": "/orders/{order_id}",
        "methods": ["GET"],
        "parameters": [
            {"name": "order_id", "in": "path", "schema": {"type": "integer"}, "required": True},
            {
                "name": "q",
                "in": "query",
                "schema": {"type": "string"},
                "required": False,
                "default": "x",
                "constraints": {"max_length": 5, "pattern": "^[a-z]+$"},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer"},
                "constraints": {"ge": 1, "le": 10},
            },
        ],
    }

    class Plugin:
        @hookimpl
        def register_routes(self, nexus: Nexus) -> list[web.RouteDef]:
            return [web.get("/orders/{order_id:\\d+}", handler)]

    app = Nexus(database=":memory:", plugins=[Plugin()])
    doc = build_openapi(app)
    validate(doc)
    op = doc["paths"]["/orders/{order_id}"]["get"]
    assert op["summary"] == "Find orders."
    params = {p["name"]: p for p in op["parameters"]}
    assert params["order_id"]["in"] == "path" and params["order_id"]["required"] is True
    assert params["order_id"]["schema"] == {"type": "integer"}
    assert params["q"]["schema"] == {
        "type": "string",
        "maxLength": 5,
        "pattern": "^[a-z]+$",
        "default": "x",
    }
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 10}


def test_unknown_plugin_route_gets_a_minimal_operation_and_the_hook_can_enrich_the_spec():
    async def report(request: web.Request) -> web.Response:
        """A plugin's report."""
        return web.json_response({})

    class Plugin:
        @hookimpl
        def register_routes(self, nexus: Nexus) -> list[web.RouteDef]:
            return [web.get("/reports/{report_id}", report)]

        @hookimpl
        def openapi_spec(self, nexus: Nexus, spec: Any) -> None:
            spec.tag({"name": "reports", "description": "Reports plugin"})

    doc = build_openapi(Nexus(database=":memory:", plugins=[Plugin()]))
    validate(doc)
    op = doc["paths"]["/reports/{report_id}"]["get"]
    assert op["summary"] == "A plugin's report."
    assert op["parameters"][0]["name"] == "report_id"
    assert {"name": "reports", "description": "Reports plugin"} in doc["tags"]


def test_auth_plugin_adds_bearer_scheme_and_401_403_when_enabled():
    if not plugin_installed("auth"):  # core alone: enable_auth has nothing to document
        doc = build_openapi(make_app(enable_auth=True))
        validate(doc)
        assert "securitySchemes" not in doc.get("components", {})
        return
    doc = build_openapi(make_app(enable_auth=True, auth_api_keys=["k1-0123456789abcdef"]))
    validate(doc)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearerAuth": []}]
    responses = doc["paths"]["/workflows/sum/execute"]["post"]["responses"]
    assert "401" in responses and "403" in responses
    assert responses["401"]["content"]["application/json"]["schema"] == ENVELOPE
    # the public paths (default: /health and below) need no credentials
    for path in ("/health", "/health/detailed"):
        health = doc["paths"][path]["get"]
        assert health["security"] == [] and "401" not in health["responses"]
    if plugin_installed("batch"):  # a plugin's route gets them too
        assert "401" in doc["paths"]["/workflows/batch"]["post"]["responses"]


def test_core_document_knows_no_plugin():
    doc = build_openapi(Nexus(database=":memory:", load_entry_points=False, enable_auth=False))
    assert "/workflows/batch" not in doc["paths"]
    assert "BatchRequest" not in doc["components"]["schemas"]
    assert "securitySchemes" not in doc["components"]
    for item in doc["paths"].values():
        for operation in item.values():
            assert "401" not in operation["responses"]


def test_a_plugin_adds_a_response_to_every_operation_with_the_public_helper():
    class Billing:
        @hookimpl
        def openapi_spec(self, nexus: Nexus, spec: Any) -> None:
            add_responses(spec, error_responses(402), where=lambda path, method: path != "/health")

    doc = build_openapi(Nexus(database=":memory:", load_entry_points=False, plugins=[Billing()]))
    validate(doc)
    operations = [(p, op) for p, item in doc["paths"].items() for op in item.values()]
    assert len(operations) > 10
    for path, operation in operations:
        assert ("402" in operation["responses"]) is (path != "/health"), path
    paid = doc["paths"]["/workflows"]["get"]["responses"]["402"]
    assert paid["content"]["application/json"]["schema"] == ENVELOPE


def test_document_is_built_once_per_app():
    app = make_app()
    assert build_openapi(app) is build_openapi(app)


def test_cli_prints_the_document(tmp_path):
    (tmp_path / "myapp.py").write_text(
        "from nexus_aio import Nexus\n"
        "app = Nexus(database=':memory:')\n"
        "@app.workflow()\n"
        "async def double(x: int = 2) -> int:\n"
        "    return 2 * x\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "nexus_aio", "openapi", "--app", "myapp:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(out.stdout)
    validate(doc)
    inputs = doc["components"]["schemas"]["DoubleInputs"]
    assert inputs["properties"]["x"] == {"type": "integer", "default": 2}


def test_app_endpoint_parameters_constraints_and_marshmallow_body_are_documented():
    app = Nexus(database=":memory:")

    @app.endpoint("/shops/{shop_id}/search")
    async def search(
        shop_id: int, q: str = Query(..., max_length=20), limit: int = Query(10, ge=1, le=50)
    ):
        """Search a shop."""
        return {"shop": shop_id, "q": q, "limit": limit}

    @app.endpoint("/orders", methods=["POST"])
    async def create_order(order: OrderSchema):
        """Create an order."""
        return order

    doc = build_openapi(app)
    validate(doc)
    op = doc["paths"]["/shops/{shop_id}/search"]["get"]
    assert op["summary"] == "Search a shop."
    params = {p["name"]: p for p in op["parameters"]}
    assert params["shop_id"]["in"] == "path" and params["shop_id"]["schema"]["type"] == "integer"
    assert params["q"]["required"] is True and params["q"]["schema"]["maxLength"] == 20
    assert params["limit"]["schema"]["minimum"] == 1 and params["limit"]["schema"]["maximum"] == 50
    body = doc["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    resolved = _schema(doc, body)
    assert resolved["properties"]["item"]["type"] == "string"
    assert resolved["required"] == ["item"]
