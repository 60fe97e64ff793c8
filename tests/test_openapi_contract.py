"""The OpenAPI document tells the truth (issue 12): distinct names whatever the workflow names,
nullable inputs, every status the server answers documented, every stated constraint enforced."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jsonschema
from openapi_spec_validator import validate
from openapi_suite_app import make_suite_app
from pydantic import BaseModel

from nexus_aio import Nexus
from nexus_aio.openapi import build_openapi
from nexus_aio.testing import make_app

METHODS = ("get", "put", "post", "delete", "patch")


class AInputs(BaseModel):  # a model named like the inputs component of the workflow "A"
    size: int


class Wrapper(BaseModel):  # nesting puts AInputs in $defs, which go to components/schemas
    inner: AInputs


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _inputs_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(doc, _resolve(doc, body)["properties"]["inputs"])


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


# -- names -----------------------------------------------------------------------------------------
async def test_operation_ids_and_component_names_are_unique_whatever_the_workflow_names(
    nexus_server, http
):
    app = make_suite_app()

    @app.workflow("model")
    def model(value: Wrapper) -> int:
        return value.inner.size

    doc = build_openapi(app)
    validate(doc)
    ids = [op["operationId"] for _, _, op in _operations(doc) if "operationId" in op]
    assert len({i.lower() for i in ids}) == len(ids), ids
    schemas = doc["components"]["schemas"]
    assert len({name.lower() for name in schemas}) == len(schemas)

    # each colliding name keeps its own path, operation and inputs
    own_input = {
        "my-workflow": "a",
        "my_workflow": "b",
        "a.b": "dotted",
        "a_b": "plain",
        "A": "big",
        "a": "small",
        "hello world": "who",
    }
    operation_ids = set()
    for name, field in own_input.items():
        path = f"/workflows/{quote(name, safe='')}/execute"
        assert list(_inputs_schema(doc, path)["properties"]) == [field], name
        operation_ids.add(doc["paths"][path]["post"]["operationId"])
    assert len(operation_ids) == len(own_input)
    # the model keeps its place next to the workflow components it was named like
    # (registered before "A": the name is taken for A's inputs before the model asks for it)
    first = Nexus(database=":memory:")
    first.register("model", model)
    first.register("A", lambda big=1: big)
    doc = build_openapi(first)
    value = _inputs_schema(doc, "/workflows/model/execute")["properties"]["value"]
    inner_ref = _resolve(doc, value)["properties"]["inner"]["$ref"]
    assert inner_ref != "#/components/schemas/AInputs"
    assert list(_resolve(doc, {"$ref": inner_ref})["properties"]) == ["size"]
    assert list(doc["components"]["schemas"]["AInputs"]["properties"]) == ["big"]
    doc = build_openapi(app)

    # the documented paths reach their own workflow on a real server
    url = await nexus_server(app)
    for name, field in own_input.items():
        path = f"/workflows/{quote(name, safe='')}/execute"
        inputs = _inputs_schema(doc, path)
        value = {"integer": 7, "number": 2.5, "boolean": True, "string": "x"}[
            inputs["properties"][field]["type"]
        ]
        async with http.post(f"{url}{path}", json={"inputs": {field: value}}) as resp:
            assert resp.status == 200, (name, await resp.text())
            body = await resp.json()
        assert body["result"] in (value, f"hello {value}"), name


# -- nullable --------------------------------------------------------------------------------------
async def test_an_input_defaulting_to_none_is_documented_nullable_and_accepts_null(
    nexus_server, http
):
    app = make_suite_app()
    doc = build_openapi(app)
    inputs = _inputs_schema(doc, "/workflows/nullable/execute")
    x = inputs["properties"]["x"]
    assert x["default"] is None
    # OpenAPI 3.1 / JSON Schema: null and integers are valid, nothing else
    jsonschema.validate(None, x)
    jsonschema.validate(3, x)
    for bad in ("3", 1.5, [], {}):
        assert not jsonschema.Draft202012Validator(x).is_valid(bad), bad
    jsonschema.validate({"x": None, "y": None, "z": None}, {**inputs, "$defs": {}})
    url = await nexus_server(app)
    for value in (None, 4):
        async with http.post(
            f"{url}/workflows/nullable/execute", json={"inputs": {"x": value}}
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["result"]["x"] == value
    async with http.post(f"{url}/workflows/nullable/execute", json={"inputs": {"x": "4"}}) as resp:
        assert resp.status == 400
    async with http.get(f"{url}/workflows/nullable/schema") as resp:
        assert (await resp.json())["inputs"]["x"]["required"] is False


# -- statuses --------------------------------------------------------------------------------------
EXECUTE_STATUSES = {"400", "403", "404", "408", "409", "413", "415", "422", "500", "503", "504"}


def test_every_status_the_server_can_answer_is_documented_per_operation():
    doc = build_openapi(make_app())
    paths = doc["paths"]
    post = paths["/workflows/sum/execute"]["post"]["responses"]
    assert EXECUTE_STATUSES <= post.keys()
    assert "429" not in post  # no limit applies
    get = paths["/workflows/sum/execute"]["get"]["responses"]
    assert {"400", "403", "404", "409", "422", "500", "503", "504"} <= get.keys()
    assert {"403", "404", "409", "500"} <= paths["/executions/{execution_id}"]["delete"][
        "responses"
    ].keys()
    assert {"403", "404", "500"} <= paths["/sessions/{session_id}"]["delete"]["responses"].keys()
    assert {"400", "404", "500", "503"} <= paths["/executions/{execution_id}"]["get"][
        "responses"
    ].keys()
    assert "403" not in paths["/health"]["get"]["responses"]  # reading is never cross-origin
    for _, method, op in _operations(doc):
        if method == "post":
            assert {"408", "413", "415"} <= op["responses"].keys(), op.get("operationId")
    for status in ("429", "503"):
        assert (
            "Retry-After"
            in (post.get(status) or paths["/executions"]["get"]["responses"]["503"])["headers"]
        )

    # 429 exactly where a limit applies, derived from the settings and workflows
    limited = build_openapi(make_suite_app())["paths"]
    assert "429" in limited["/workflows/dag-flow/execute"]["post"]["responses"]  # its own limit
    assert "429" not in limited["/workflows/a/execute"]["post"]["responses"]
    assert "429" in limited["/items/{item_id}"]["get"]["responses"]  # custom endpoint
    everywhere = build_openapi(make_suite_app(rate_limit=60))["paths"]
    assert "429" in everywhere["/workflows/a/execute"]["post"]["responses"]
    assert "429" in everywhere["/executions"]["get"]["responses"]
    assert "429" not in everywhere["/health"]["get"]["responses"]
    assert "429" not in everywhere["/openapi.json"]["get"]["responses"]


async def test_every_status_a_real_server_answers_is_in_the_document(nexus_server, http):
    app = make_suite_app(max_request_size=1024, request_timeout=0.2)

    @app.workflow("sleepy", rate_limit=1)
    async def sleepy(seconds: float = 0.0) -> float:
        import asyncio

        await asyncio.sleep(seconds)
        return seconds

    doc = build_openapi(app)
    url = await nexus_server(app)
    seen: list[tuple[str, str, int]] = []

    async def call(method: str, template: str, path: str, **kwargs: Any) -> Any:
        async with http.request(method, url + path, **kwargs) as resp:
            seen.append((template, method.lower(), resp.status))
            return await resp.json() if resp.content_type == "application/json" else None

    execute = "/workflows/a/execute"
    await call("POST", execute, execute, data=b"{", headers={"Content-Type": "application/json"})
    await call("POST", execute, execute, json={"inputs": {"small": "x" * 2000}})  # 413
    await call("POST", execute, execute, json={"inputs": {"nope": 1}})  # 400
    await call("GET", execute, execute + "?mode=bogus")  # 400
    done = await call("POST", execute, execute, json={"inputs": {}})
    await call("POST", execute, execute, json={}, headers={"Idempotency-Key": "k1"})
    await call(
        "POST", execute, execute, json={"inputs": {"small": 3}}, headers={"Idempotency-Key": "k1"}
    )
    sleepy_path = "/workflows/sleepy/execute"
    await call("POST", sleepy_path, sleepy_path, json={"inputs": {"seconds": 5}})  # 504
    await call("POST", sleepy_path, sleepy_path, json={"inputs": {}})  # 429
    one = "/executions/{execution_id}"
    await call("DELETE", one, f"/executions/{done['workflow_id']}")  # 409: finished
    await call("GET", one, "/executions/wf-nope")  # 404
    await call("GET", one, f"/executions/{done['workflow_id']}?wait=61")  # 400
    await call("GET", "/executions", "/executions?limit=0")  # 400
    await call("GET", "/sessions/{session_id}", "/sessions/no-such-session")  # 404
    await call("GET", "/items/{item_id}", "/items/x")  # 400
    statuses = {status for _, _, status in seen}
    assert {400, 404, 409, 413, 422, 429, 504} <= statuses, seen
    for template, method, status in seen:
        assert str(status) in doc["paths"][template][method]["responses"], (template, status)


async def test_an_idempotency_key_reused_with_another_session_header_is_a_422(nexus_server, http):
    url = await nexus_server(make_suite_app())
    path = f"{url}/workflows/a/execute"
    statuses = []
    for session in ("s-1", "s-1", "s-2"):
        headers = {"Idempotency-Key": "same", "X-Session-ID": session}
        async with http.post(path, json={"inputs": {"small": 1}}, headers=headers) as resp:
            statuses.append(resp.status)
            replayed = resp.headers.get("Idempotent-Replayed")
    assert statuses == [200, 200, 422] and replayed is None


# -- constraints -----------------------------------------------------------------------------------
PATTERN_BREAKERS = ("", " ", "!", "a b", "é", "{x}", "x" * 300)


def _violations(schema: dict[str, Any]) -> list[Any]:
    """Values that break one constraint the schema states each (as query/header text)."""
    out: list[Any] = []
    kind = schema.get("type")
    if "maximum" in schema:
        out.append(schema["maximum"] + 1)
    if "minimum" in schema:
        out.append(schema["minimum"] - 1)
    if "exclusiveMaximum" in schema:
        out.append(schema["exclusiveMaximum"])
    if "exclusiveMinimum" in schema:
        out.append(schema["exclusiveMinimum"])
    if "maxLength" in schema:
        out.append("a" * (schema["maxLength"] + 1))
    if schema.get("minLength", 0) > 0:
        out.append("")
    if "enum" in schema:
        out += ["bogus", ""]
    if "pattern" in schema:
        checker = jsonschema.Draft202012Validator(schema)
        out.append(next(v for v in PATTERN_BREAKERS if not checker.is_valid(v)))
    if kind == "integer":
        out += ["1.5", "x"]
    elif kind == "number":
        out += ["x", "nan", "inf"]
    return out


async def test_every_documented_parameter_constraint_is_enforced_with_a_400(nexus_server, http):
    app = make_suite_app()
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/a/execute", json={}) as resp:
        execution_id = (await resp.json())["workflow_id"]
    valid = {"execution_id": execution_id, "session_id": "s-1", "item_id": "1", "name": "a"}
    doc = build_openapi(app)
    checked = []
    for path, method, op in _operations(doc):
        params = op.get("parameters", [])
        for param in params:
            for bad in _violations(param["schema"]):
                if param["in"] == "path" and bad == "":
                    continue  # an empty segment is another URL (no route), not a value
                target = path
                for other in params:
                    if other["in"] == "path":
                        value = bad if other is param else valid[other["name"]]
                        target = target.replace(
                            "{" + other["name"] + "}", quote(str(value), safe="")
                        )
                query = {param["name"]: str(bad)} if param["in"] == "query" else None
                headers = {param["name"]: str(bad)} if param["in"] == "header" else None
                body = {} if "requestBody" in op else None
                async with http.request(
                    method, url + target, params=query, headers=headers, json=body
                ) as resp:
                    text = await resp.text()
                    assert resp.status == 400, (method, path, param["name"], bad, text)
                checked.append((path, param["name"]))
    names = {name for _, name in checked}
    for name in ("wait", "limit", "last_event_id", "session_id", "X-Session-ID"):
        assert name in names
    for name in ("Idempotency-Key", "mode", "q", "item_id"):
        assert name in names
