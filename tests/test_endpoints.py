"""Custom endpoints (``@app.endpoint``) over real HTTP: parameters, bodies, methods, responses."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.web import Request
from marshmallow import Schema, fields

from nexus_aio import Nexus, Query
from nexus_aio.errors import ConfigurationError, RegistrationError
from nexus_aio.web.endpoints import analyze_endpoint
from nexus_aio.workflows.endpoint_params import EndpointInfo, path_variables


def spec_app(**settings: Any) -> Nexus:
    """The spec's three custom endpoint examples, verbatim (imports adapted to aiohttp)."""
    app = Nexus(database=":memory:", **settings)
    messages: dict[str, dict[str, Any]] = {"m1": {"id": "m1", "text": "hi"}}

    @app.workflow()
    async def chat_workflow(id: str) -> dict[str, Any]:
        return {"messages": [f"message of {id}"]}

    @app.workflow()
    async def search_workflow(query: str, limit: int, offset: int) -> dict[str, Any]:
        return {"query": query, "limit": limit, "offset": offset}

    @app.workflow()
    async def get_message(id: str) -> dict[str, Any]:
        return messages.get(id, {})

    @app.workflow()
    async def update_message(id: str, text: str) -> dict[str, Any]:
        messages[id] = {"id": id, "text": text}
        return messages[id]

    @app.workflow()
    async def delete_message(id: str) -> dict[str, Any]:
        return {"deleted": messages.pop(id, None) is not None}

    # Custom endpoint with path parameters
    @app.endpoint("/api/conversations/{conversation_id}", methods=["GET"], rate_limit=50)
    async def get_conversation(conversation_id: str):
        """Get conversation by ID."""
        result = await app._execute_workflow("chat_workflow", {"id": conversation_id})
        return {"conversation_id": conversation_id, "data": result}

    # Query parameters (built-in FastAPI support)
    @app.endpoint("/api/search")
    async def search(q: str, limit: int = 10, offset: int = 0):
        """Search with pagination."""
        result = await app._execute_workflow(
            "search_workflow", {"query": q, "limit": limit, "offset": offset}
        )
        return result

    # Multiple HTTP methods (CRUD)
    @app.endpoint("/api/messages/{msg_id}", methods=["GET", "PUT", "DELETE"])
    async def manage_message(msg_id: str, request: Request):
        """Full CRUD on messages."""
        if request.method == "GET":
            return await app._execute_workflow("get_message", {"id": msg_id})
        elif request.method == "PUT":
            body = await request.json()
            return await app._execute_workflow("update_message", {"id": msg_id, **body})
        elif request.method == "DELETE":
            return await app._execute_workflow("delete_message", {"id": msg_id})

    return app


async def call(http, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.request(method, url, **kw) as resp:
        body = await resp.read()
        data = await resp.json() if body and resp.content_type == "application/json" else body
        return resp.status, data, resp.headers


# -- the spec's examples ---------------------------------------------------------------------------
async def test_spec_path_parameter_endpoint_runs_the_workflow(nexus_server, http):
    url = await nexus_server(spec_app())
    status, data, headers = await call(http, "GET", f"{url}/api/conversations/c-42")
    assert status == 200
    assert data == {"conversation_id": "c-42", "data": {"messages": ["message of c-42"]}}
    assert headers["X-RateLimit-Limit"] == "50"


async def test_spec_search_coerces_query_parameters_and_fills_defaults(nexus_server, http):
    url = await nexus_server(spec_app())
    status, data, _ = await call(http, "GET", f"{url}/api/search?q=cats&limit=5")
    assert status == 200
    assert data == {"query": "cats", "limit": 5, "offset": 0}


async def test_spec_search_without_required_q_is_400_naming_it(nexus_server, http):
    url = await nexus_server(spec_app())
    status, data, _ = await call(http, "GET", f"{url}/api/search?limit=5")
    assert status == 400
    error = data["error"]
    assert error["type"] == "ValidationError"
    assert error["details"]["field"] == "q"
    assert error["details"]["received"] == "missing"
    assert error["details"]["errors"][0]["field"] == "q"


async def test_spec_search_with_non_integer_limit_is_400_naming_it(nexus_server, http):
    url = await nexus_server(spec_app())
    status, data, _ = await call(http, "GET", f"{url}/api/search?q=a&limit=ten")
    assert status == 400
    details = data["error"]["details"]
    assert (details["field"], details["expected"], details["received"]) == (
        "limit",
        "integer",
        "string",
    )


async def test_spec_crud_dispatches_on_request_method(nexus_server, http):
    url = await nexus_server(spec_app())
    status, data, _ = await call(http, "GET", f"{url}/api/messages/m1")
    assert (status, data) == (200, {"id": "m1", "text": "hi"})
    status, data, _ = await call(http, "PUT", f"{url}/api/messages/m1", json={"text": "edited"})
    assert (status, data) == (200, {"id": "m1", "text": "edited"})
    status, data, _ = await call(http, "GET", f"{url}/api/messages/m1")
    assert data == {"id": "m1", "text": "edited"}
    status, data, _ = await call(http, "DELETE", f"{url}/api/messages/m1")
    assert (status, data) == (200, {"deleted": True})
    status, data, _ = await call(http, "GET", f"{url}/api/messages/m1")
    assert (status, data) == (200, {})


async def test_method_not_declared_is_405_envelope_with_allow(nexus_server, http):
    url = await nexus_server(spec_app())
    status, data, headers = await call(http, "POST", f"{url}/api/messages/m1", json={})
    assert status == 405
    assert data["error"]["type"] == "MethodNotAllowed"
    assert set(headers["Allow"].split(",")) == {"GET", "PUT", "DELETE"}


async def test_head_is_not_implied_by_get(nexus_server, http):
    url = await nexus_server(spec_app())
    status, _, headers = await call(http, "HEAD", f"{url}/api/messages/m1")
    assert status == 405
    assert "HEAD" not in headers["Allow"].split(",")


async def test_workflow_error_inside_endpoint_passes_through_the_envelope(nexus_server, http):
    app = spec_app()

    @app.endpoint("/api/bad")
    async def bad(name: str):
        return await app._execute_workflow(name, {})

    url = await nexus_server(app)
    status, data, _ = await call(http, "GET", f"{url}/api/bad?name=nope")
    assert status == 404 and data["error"]["type"] == "WorkflowNotFound"
    status, data, _ = await call(http, "GET", f"{url}/api/bad?name=chat_workflow")
    assert status == 400 and data["error"]["details"]["field"] == "id"


async def test_unexpected_exception_is_500_envelope_without_traceback(nexus_server, http, caplog):
    app = Nexus(database=":memory:")

    @app.endpoint("/api/boom")
    async def boom():
        raise KeyError("secret-internal-detail")

    url = await nexus_server(app)
    status, data, _ = await call(http, "GET", f"{url}/api/boom")
    assert status == 500
    assert data["success"] is False
    assert data["error"]["message"] == "Internal server error"
    assert "secret-internal-detail" not in str(data)
    assert "Traceback" not in str(data)


# -- parameters ------------------------------------------------------------------------------------
async def test_path_parameter_is_coerced_to_its_annotation(nexus_server, http):
    app = Nexus(database=":memory:")

    @app.endpoint("/api/items/{item_id}")
    async def item(item_id: int):
        return {"id": item_id, "type": type(item_id).__name__}

    url = await nexus_server(app)
    status, data, _ = await call(http, "GET", f"{url}/api/items/7")
    assert (status, data) == (200, {"id": 7, "type": "int"})
    status, data, _ = await call(http, "GET", f"{url}/api/items/seven")
    assert status == 400
    assert data["error"]["details"]["field"] == "item_id"
    assert data["error"]["details"]["expected"] == "integer"


async def test_query_parameters_coerce_bool_float_and_repeated_list(nexus_server, http):
    app = Nexus(database=":memory:")

    @app.endpoint("/api/q")
    async def q(flag: bool = False, ratio: float = 1.0, tag: list[str] | None = None):
        return {"flag": flag, "ratio": ratio, "tag": tag}

    url = await nexus_server(app)
    status, data, _ = await call(http, "GET", f"{url}/api/q?flag=true&ratio=0.5&tag=a&tag=b")
    assert (status, data) == (200, {"flag": True, "ratio": 0.5, "tag": ["a", "b"]})
    status, data, _ = await call(http, "GET", f"{url}/api/q")
    assert data == {"flag": False, "ratio": 1.0, "tag": None}


def constrained_app() -> Nexus:
    app = Nexus(database=":memory:")

    @app.endpoint("/api/find")
    async def find(
        code: str = Query(..., pattern=r"[A-Z]{3}"),
        limit: int = Query(10, ge=1, le=100),
        name: str = Query("", max_length=5),
    ):
        return {"code": code, "limit": limit, "name": name}

    return app


@pytest.mark.parametrize(
    ("query", "field", "expected"),
    [
        ("code=abc", "code", "match pattern '[A-Z]{3}'"),
        ("code=ABCD", "code", "match pattern '[A-Z]{3}'"),
        ("code=ABC&limit=0", "limit", ">= 1"),
        ("code=ABC&limit=101", "limit", "<= 100"),
        ("code=ABC&name=toolong", "name", "at most 5 characters"),
        ("limit=5", "code", "string"),
    ],
)
async def test_query_constraints_reject_with_400_naming_the_field(
    nexus_server, http, query, field, expected
):
    url = await nexus_server(constrained_app())
    status, data, _ = await call(http, "GET", f"{url}/api/find?{query}")
    assert status == 400
    details = data["error"]["details"]
    assert details["field"] == field
    assert details["expected"] == expected
    assert details["errors"][0]["field"] == field


async def test_query_constraints_accept_values_on_the_bounds(nexus_server, http):
    url = await nexus_server(constrained_app())
    status, data, _ = await call(http, "GET", f"{url}/api/find?code=ABC&limit=100&name=abcde")
    assert (status, data) == (200, {"code": "ABC", "limit": 100, "name": "abcde"})
    status, data, _ = await call(http, "GET", f"{url}/api/find?code=XYZ&limit=1")
    assert (status, data) == (200, {"code": "XYZ", "limit": 1, "name": ""})


async def test_every_bad_parameter_is_listed_in_errors(nexus_server, http):
    url = await nexus_server(constrained_app())
    status, data, _ = await call(http, "GET", f"{url}/api/find?limit=0&name=toolong")
    assert status == 400
    assert [e["field"] for e in data["error"]["details"]["errors"]] == ["code", "limit", "name"]


# -- bodies ----------------------------------------------------------------------------------------
@dataclass
class NewUser:
    name: str
    age: int = 0


class UserSchema(Schema):
    name = fields.String(required=True)
    age = fields.Integer(load_default=0)


def body_app(**settings: Any) -> Nexus:
    app = Nexus(database=":memory:", **settings)

    @app.endpoint("/api/users", methods=["POST"])
    async def create_user(user: NewUser):
        assert isinstance(user, NewUser)
        return {"name": user.name, "age": user.age}

    @app.endpoint("/api/mm", methods=["POST"])
    async def create_mm(user: UserSchema):
        return {"loaded": user}

    @app.endpoint("/api/mm-instance", methods=["PATCH"])
    async def patch_mm(user: UserSchema(partial=True)):  # type: ignore[valid-type]
        return {"loaded": user}

    @app.endpoint("/api/raw/{key}", methods=["PUT"])
    async def put_raw(key: str, data: dict[str, Any], dry_run: bool = False):
        return {"key": key, "data": data, "dry_run": dry_run}

    @app.endpoint("/api/echo", methods=["POST"])
    async def echo(request: Request):
        return await request.json()

    return app


async def test_dataclass_body_is_built_from_json(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "POST", f"{url}/api/users", json={"name": "ann"})
    assert (status, data) == (200, {"name": "ann", "age": 0})


async def test_dataclass_body_with_bad_fields_is_400_naming_them(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "POST", f"{url}/api/users", json={"age": "old"})
    assert status == 400
    details = data["error"]["details"]
    assert details["field"] == "body.name"
    assert {e["field"] for e in details["errors"]} == {"body.name", "body.age"}


async def test_missing_required_body_is_400(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "POST", f"{url}/api/users")
    assert status == 400
    assert data["error"]["details"]["field"] == "body"
    assert data["error"]["details"]["received"] == "missing"


async def test_malformed_json_body_is_400(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "POST", f"{url}/api/users", data=b"{nope")
    assert status == 400 and data["error"]["details"]["field"] == "body"


async def test_marshmallow_schema_class_loads_the_body(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "POST", f"{url}/api/mm", json={"name": "bo"})
    assert (status, data) == (200, {"loaded": {"name": "bo", "age": 0}})


async def test_marshmallow_errors_are_400_naming_the_field(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "POST", f"{url}/api/mm", json={"age": "x", "extra": 1})
    assert status == 400
    errors = {e["field"]: e for e in data["error"]["details"]["errors"]}
    assert set(errors) == {"body.name", "body.age", "body.extra"}
    assert errors["body.name"]["received"] == "missing"
    assert errors["body.age"]["expected"] == "integer"
    assert errors["body.extra"]["expected"] == "nothing"


async def test_marshmallow_schema_instance_is_used_as_configured(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "PATCH", f"{url}/api/mm-instance", json={"age": 3})
    assert (status, data) == (200, {"loaded": {"age": 3}})


async def test_dict_body_with_path_and_query_parameters(nexus_server, http):
    url = await nexus_server(body_app())
    status, data, _ = await call(http, "PUT", f"{url}/api/raw/k1?dry_run=yes", json={"a": [1, 2]})
    assert (status, data) == (200, {"key": "k1", "data": {"a": [1, 2]}, "dry_run": True})
    status, data, _ = await call(http, "PUT", f"{url}/api/raw/k1", json=[1, 2])
    assert status == 400 and data["error"]["details"]["expected"] == "object"


@pytest.mark.parametrize("path", ["/api/users", "/api/mm", "/api/echo"])
async def test_dangerous_keys_in_body_are_400(nexus_server, http, path):
    url = await nexus_server(body_app())
    payload = {"name": "x", "nested": {"__proto__": {"admin": True}}}
    status, data, _ = await call(http, "POST", f"{url}{path}", json=payload)
    assert status == 400
    assert data["error"]["type"] == "SecurityError"


async def test_oversize_body_is_413(nexus_server, http):
    url = await nexus_server(body_app(max_request_size=1024))
    payload = {"name": "x" * 4096}
    for path in ("/api/users", "/api/echo"):
        status, data, _ = await call(http, "POST", f"{url}{path}", json=payload)
        assert status == 413, path
        assert data["error"]["type"] == "PayloadTooLarge"


# -- responses and execution -----------------------------------------------------------------------
async def test_stream_response_is_returned_unchanged(nexus_server, http):
    app = Nexus(database=":memory:")

    @app.endpoint("/api/download")
    async def download(request: Request):
        resp = web.StreamResponse(status=201, headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for chunk in (b"one,", b"two"):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    @app.endpoint("/api/text")
    async def text():
        return web.Response(text="plain", status=202)

    url = await nexus_server(app)
    status, data, headers = await call(http, "GET", f"{url}/api/download")
    assert (status, data, headers["Content-Type"]) == (201, b"one,two", "text/plain")
    status, data, _ = await call(http, "GET", f"{url}/api/text")
    assert (status, data) == (202, b"plain")


async def test_returning_none_is_204_and_list_is_json(nexus_server, http):
    app = Nexus(database=":memory:")

    @app.endpoint("/api/things", methods=["GET", "DELETE"])
    async def things(request: Request):
        return None if request.method == "DELETE" else [1, 2, 3]

    url = await nexus_server(app)
    assert (await call(http, "GET", f"{url}/api/things"))[:2] == (200, [1, 2, 3])
    status, data, _ = await call(http, "DELETE", f"{url}/api/things")
    assert (status, data) == (204, b"")


async def test_sync_handler_runs_off_the_event_loop_thread(nexus_server, http):
    app = Nexus(database=":memory:")
    loop_thread = threading.get_ident()

    @app.endpoint("/api/sync/{n}")
    def sync_handler(n: int):
        return {"n": n * 2, "off_loop": threading.get_ident() != loop_thread}

    url = await nexus_server(app)
    status, data, _ = await call(http, "GET", f"{url}/api/sync/21")
    assert (status, data) == (200, {"n": 42, "off_loop": True})


async def test_api_prefix_applies_to_endpoints(nexus_server, http):
    url = await nexus_server(spec_app(api_prefix="/v1"))
    assert url.endswith("/v1")
    root = url[: -len("/v1")]
    status, _, _ = await call(http, "GET", f"{root}/v1/api/conversations/x")
    assert status == 200
    status, data, _ = await call(http, "GET", f"{root}/api/conversations/x")
    assert status == 404 and data["success"] is False


async def test_default_endpoint_rate_limit_comes_from_settings(nexus_server, http):
    url = await nexus_server(spec_app(endpoint_rate_limit=2))
    statuses = [(await call(http, "GET", f"{url}/api/search?q=a"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    # the conversation endpoint declares its own limit, so it has its own bucket
    status, _, headers = await call(http, "GET", f"{url}/api/conversations/c")
    assert status == 200 and headers["X-RateLimit-Limit"] == "50"


# -- build-time contract ---------------------------------------------------------------------------
def handlers_by_path(app: Nexus) -> dict[str, Any]:
    aio = app.create_app()
    return {
        r.resource.canonical: r.handler
        for r in aio.router.routes()
        if r.resource is not None and hasattr(r.handler, "nexus_endpoint")
    }


def test_handlers_carry_rate_limit_and_endpoint_metadata():
    app = constrained_app()

    @app.endpoint("/api/users/{user_id}", methods=["PUT", "PATCH"], rate_limit=7)
    async def update(user_id: int, user: NewUser, request: Request):
        """Update a user.

        Longer text."""

    handlers = handlers_by_path(app)
    find = handlers["/api/find"]
    assert find.nexus_rate_limit == 100
    meta: EndpointInfo = find.nexus_endpoint
    params = {p.name: p for p in meta.parameters}
    assert params["code"].required and params["code"].constraints == {"pattern": "[A-Z]{3}"}
    assert params["limit"].schema == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 10,
    }
    assert params["name"].constraints == {"maxLength": 5}
    assert meta.body is None and meta.methods == ("GET",)

    upd = handlers["/api/users/{user_id}"]
    assert upd.nexus_rate_limit == 7
    info = upd.nexus_endpoint.to_dict()
    assert info["methods"] == ["PUT", "PATCH"]
    assert info["description"].startswith("Update a user.")
    assert info["parameters"] == [
        {"name": "user_id", "in": "path", "schema": {"type": "integer"}, "required": True}
    ]
    assert info["body"]["kind"] == "dataclass"
    assert info["body"]["schema"]["properties"]["name"] == {"type": "string"}
    assert upd.nexus_endpoint.body_schema["required"] == ["name"]


def test_openapi_documents_endpoint_parameters_from_the_metadata():
    openapi = pytest.importorskip("nexus_aio.openapi.document")
    app = constrained_app()
    app.create_app()
    doc = openapi.build_openapi(app)
    operation = doc["paths"]["/api/find"]["get"]
    by_name = {p["name"]: p for p in operation["parameters"]}
    assert by_name["code"]["required"] is True
    assert by_name["code"]["schema"]["pattern"] == "[A-Z]{3}"
    assert by_name["limit"]["schema"]["maximum"] == 100


def test_path_variables_reads_plain_and_regex_placeholders():
    assert path_variables("/a/{x}/b/{y:\\d{2}}/{z}") == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("handler_src", "message"),
    [
        ("async def h(a: dict, b: dict): pass", "two body parameters"),
        ("async def h(*args): pass", "*args"),
        ("async def h():\n    yield 1", "generator"),
        ("class Foo: pass\nasync def h(x: Foo): pass", "cannot be read from text"),
    ],
)
def test_bad_handler_signatures_fail_at_build(handler_src, message):
    namespace: dict[str, Any] = {}
    exec(handler_src, namespace)
    app = Nexus(database=":memory:")
    app.endpoint("/api/h")(namespace["h"])
    with pytest.raises(RegistrationError, match=message.replace("*", r"\*")):
        app.create_app()


def test_analyze_endpoint_works_without_building_the_app():
    app = spec_app()
    info = analyze_endpoint(app.endpoints[1], default_rate_limit=30)
    assert info.rate_limit == 30
    assert [p.name for p in info.parameters] == ["q", "limit", "offset"]
    assert info.description == "Search with pagination."


def test_same_method_and_path_twice_fails_startup():
    app = Nexus(database=":memory:")

    @app.endpoint("/api/dup")
    async def one():
        return 1

    @app.endpoint("/api/dup", methods=["GET", "POST"])
    async def two():
        return 2

    with pytest.raises(ConfigurationError, match="Duplicate route GET /api/dup"):
        app.create_app()


def test_endpoint_clashing_with_a_core_route_fails_startup():
    app = Nexus(database=":memory:")

    @app.endpoint("/health")
    async def my_health():
        return {}

    with pytest.raises(ConfigurationError, match="Duplicate route GET /health"):
        app.create_app()
