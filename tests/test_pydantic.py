"""pydantic v2 models as workflow inputs and results, over real HTTP (the ``pydantic`` extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import aiohttp
from openapi_spec_validator import validate
from pydantic import BaseModel, ConfigDict, Field, computed_field, create_model

from nexus_aio import Context, Nexus, Workflow
from nexus_aio.testing import free_port, make_app, read_sse, wait_for_port


class Address(BaseModel):
    street: str
    zip: str = Field(pattern=r"^\d{5}$", description="Five digits")


class User(BaseModel):
    name: str
    age: int = Field(ge=0)
    address: Address
    tags: list[str] = []


class StrictPoint(BaseModel):
    model_config = ConfigDict(strict=True)
    x: int
    at: datetime | None = None


class LaxPoint(BaseModel):
    x: int


class Greeting(BaseModel):
    text: str
    user: User
    at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def length(self) -> int:
        return len(self.text)


@dataclass
class Report:
    title: str
    count: int


class Totals(TypedDict):
    total: int
    names: list[str]


AT = datetime(2024, 5, 17, 12, 30)


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    app = make_app(**settings)

    @app.workflow()
    def register(user: User, note: Address | None = None) -> Greeting:
        """Greet a user; the workflow receives the model instances."""
        assert isinstance(user, User) and isinstance(user.address, Address)
        assert note is None or isinstance(note, Address)
        return Greeting(text=f"Welcome {user.name} from {user.address.zip}", user=user, at=AT)

    @app.workflow()
    async def headcount(users: list[User]) -> Totals:
        assert all(isinstance(u, User) for u in users)
        return {"total": len(users), "names": [u.name for u in users]}

    @app.workflow()
    async def strict_x(point: StrictPoint) -> int:
        assert point.at is None or isinstance(point.at, datetime)
        return point.x

    @app.workflow()
    async def lax_x(point: LaxPoint) -> int:
        return point.x

    @app.workflow()
    async def oldest(users: list[User]) -> list[User]:
        return sorted(users, key=lambda u: -u.age)

    @app.workflow()
    async def report(title: str) -> Report:
        return Report(title, len(title))

    @app.workflow()
    async def greetings(ctx: Context, names: list[str]) -> AsyncIterator[Greeting]:
        for name in names:
            user = User(name=name, age=1, address=Address(street="Main", zip="00001"))
            yield Greeting(text=f"hi {name}", user=user, at=AT)

    def make_user(name: str) -> User:
        return User(name=name, age=30, address=Address(street="Elm", zip="12345"))

    def describe(user: User) -> Greeting:
        return Greeting(text=f"{user.name} is {user.age}", user=user, at=AT)

    wf = Workflow("pipeline")
    wf.add_node("make", make_user)
    wf.add_node("describe", describe)
    wf.connect("make", "describe", {"result": "user"})
    app.register("pipeline", wf)
    return app


USER = {"name": "Ada", "age": 36, "address": {"street": "Main St", "zip": "12345"}}
GREETING = {
    "text": "Welcome Ada from 12345",
    "user": {**USER, "tags": []},
    "at": "2024-05-17T12:30:00",
    "length": 22,
}


async def execute(
    http: aiohttp.ClientSession, url: str, name: str, inputs: Any, mode: str = "sync"
) -> tuple[int, Any]:
    async with http.post(
        f"{url}/workflows/{name}/execute", json={"inputs": inputs, "mode": mode}
    ) as resp:
        return resp.status, await resp.json()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def errors_by_field(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    assert body["success"] is False and body["error"]["type"] == "ValidationError"
    return {e["field"]: e for e in body["error"]["details"]["errors"]}


# -- inputs ----------------------------------------------------------------------------------------
async def test_a_model_input_is_validated_and_the_workflow_receives_the_instance(
    nexus_server, http
):
    url = await nexus_server(app_())
    status, body = await execute(http, url, "register", {"user": USER})
    assert status == 200, body
    assert body["result"] == GREETING


async def test_nested_model_errors_are_all_listed_with_dotted_fields(nexus_server, http):
    url = await nexus_server(app_())
    bad = {"name": 7, "age": -1, "address": {"zip": "12"}, "extra": 1}
    status, body = await execute(
        http, url, "register", {"user": bad, "note": {"street": 1, "zip": "99999"}}
    )
    assert status == 400
    errors = errors_by_field(body)
    assert set(errors) == {
        "user.name",
        "user.age",
        "user.address.street",
        "user.address.zip",
        "note.street",
    }
    assert errors["user.name"]["expected"] == "string"
    assert errors["user.name"]["received"] == "number"
    assert errors["user.address.street"]["received"] == "missing"
    assert errors["user.address.street"]["expected"] == "string"
    assert errors["user.address.street"]["message"] == (
        "Missing required input: user.address.street"
    )
    assert "pattern" in errors["user.address.zip"]["message"]
    assert errors["user.age"]["message"].startswith("user.age: ")
    details = body["error"]["details"]
    assert details["field"] == "user.name"  # the first problem also sits at the top
    assert body["error"]["message"].startswith("5 invalid inputs: user.name")


async def test_a_missing_model_input_and_a_non_object_are_the_core_errors(nexus_server, http):
    url = await nexus_server(app_())
    status, body = await execute(http, url, "register", {})
    assert status == 400
    assert errors_by_field(body)["user"]["message"] == "Missing required input: user"
    status, body = await execute(http, url, "register", {"user": [1, 2]})
    assert status == 400
    error = errors_by_field(body)["user"]
    assert (error["expected"], error["received"]) == ("object", "array")


async def test_a_list_of_models_is_validated_item_by_item(nexus_server, http):
    url = await nexus_server(app_())
    status, body = await execute(http, url, "headcount", {"users": [USER, {**USER, "name": "Bo"}]})
    assert status == 200, body
    assert body["result"] == {"total": 2, "names": ["Ada", "Bo"]}
    second = {**USER, "address": {"street": "x", "zip": "abc"}}
    status, body = await execute(http, url, "headcount", {"users": [USER, second, {"age": "x"}]})
    assert status == 400
    assert set(errors_by_field(body)) == {
        "users[1].address.zip",
        "users[2].name",
        "users[2].age",
        "users[2].address",
    }


async def test_a_strict_model_refuses_a_numeric_string_a_lax_one_accepts_it(nexus_server, http):
    url = await nexus_server(app_())
    status, body = await execute(http, url, "strict_x", {"point": {"x": "3"}})
    assert status == 400
    error = errors_by_field(body)["point.x"]
    assert (error["expected"], error["received"]) == ("integer", "string")
    status, body = await execute(http, url, "lax_x", {"point": {"x": "3"}})
    assert (status, body["result"]) == (200, 3)
    # JSON input: a strict model still reads an ISO date string for a datetime field
    status, body = await execute(
        http, url, "strict_x", {"point": {"x": 4, "at": "2024-01-02T03:04:05"}}
    )
    assert (status, body["result"]) == (200, 4)


async def test_a_model_input_sent_as_a_query_parameter_is_read_as_json(nexus_server, http):
    url = await nexus_server(app_())
    params = {"point": json.dumps({"x": 5})}
    body = await get_json(http, f"{url}/workflows/lax_x/execute?" + _query(params))
    assert body["result"] == 5


def _query(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


# -- results ---------------------------------------------------------------------------------------
async def test_a_returned_model_is_json_in_sync_stream_and_async_runs(nexus_server, http, tmp_path):
    app = app_(database=str(tmp_path / "nexus.db"))
    url = await nexus_server(app)
    status, body = await execute(http, url, "register", {"user": USER})
    assert (status, body["result"]) == (200, GREETING)
    sync_id = body["workflow_id"]

    async with http.post(
        f"{url}/workflows/register/execute", json={"inputs": {"user": USER}, "mode": "stream"}
    ) as resp:
        assert resp.status == 200
        events = [(kind, data) for _, kind, data in await read_sse(resp)]
    assert events[-1][0] == "complete"
    assert events[-1][1]["result"] == GREETING
    stream_id = events[0][1]["workflow_id"]

    status, accepted = await execute(http, url, "register", {"user": USER}, mode="async")
    assert status == 202
    async_id = accepted["workflow_id"]
    record = await get_json(http, f"{url}/executions/{async_id}?wait=10")
    assert record["status"] == "succeeded"
    assert record["result"] == GREETING

    assert app.service is not None
    for execution_id in (sync_id, stream_id, async_id):
        stored = await app.service.executions.get(execution_id)
        assert stored is not None and stored.result == GREETING
        assert type(stored.result) is dict
        record = await get_json(http, f"{url}/executions/{execution_id}")
        assert record["result"] == GREETING


async def test_returned_lists_of_models_and_streamed_model_chunks_are_json(nexus_server, http):
    url = await nexus_server(app_())
    young = {**USER, "name": "Bo", "age": 3}
    status, body = await execute(http, url, "oldest", {"users": [young, USER]})
    assert status == 200
    assert body["result"] == [{**USER, "tags": []}, {**young, "tags": []}]

    async with http.post(
        f"{url}/workflows/greetings/execute",
        json={"inputs": {"names": ["a", "b"]}, "mode": "stream"},
    ) as resp:
        events = [(kind, data) for _, kind, data in await read_sse(resp)]
    chunks = [data for kind, data in events if kind == "chunk"]
    assert [c["text"] for c in chunks] == ["hi a", "hi b"]
    assert chunks[0]["at"] == "2024-05-17T12:30:00" and chunks[0]["length"] == 4
    assert events[-1][1]["result"] == chunks


async def test_a_dag_passes_models_between_nodes_and_returns_json(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/pipeline/execute",
        json={"inputs": {"name": "Cy"}, "mode": "stream"},
    ) as resp:
        events = [(kind, data) for _, kind, data in await read_sse(resp)]
    done = {data["node"]: data["output"] for kind, data in events if kind == "node_complete"}
    assert done["make"]["address"] == {"street": "Elm", "zip": "12345"}
    assert done["describe"]["text"] == "Cy is 30"
    assert events[-1][1]["result"] == done["describe"]


# -- schemas ---------------------------------------------------------------------------------------
async def test_the_schema_endpoint_shows_the_models_fields_and_json_schema(nexus_server, http):
    url = await nexus_server(app_())
    schema = await get_json(http, f"{url}/workflows/register/schema")
    user = schema["inputs"]["user"]
    assert user["type"] == "object" and user["required"] is True
    assert set(user["properties"]) == {"name", "age", "address", "tags"}
    assert user["properties"]["address"]["properties"]["zip"] == {
        "type": "string",
        "required": True,
        "description": "Five digits",
    }
    full = user["json_schema"]
    assert full["title"] == "User"
    assert full["properties"]["address"] == {"$ref": "#/$defs/Address"}
    assert full["$defs"]["Address"]["properties"]["zip"]["pattern"] == r"^\d{5}$"
    assert schema["inputs"]["note"]["nullable"] is True
    assert schema["inputs"]["note"]["required"] is False

    result = schema["outputs"]["result"]
    assert result["title"] == "Greeting"
    assert set(result["properties"]) == {"text", "user", "at", "length"}  # serialisation mode
    assert result["properties"]["user"] == {"$ref": "#/$defs/User"}
    assert set(result["$defs"]) == {"User", "Address"}

    listed = await get_json(http, f"{url}/workflows/headcount/schema")
    assert listed["inputs"]["users"]["items"]["properties"]["address"]["type"] == "object"
    assert listed["outputs"]["result"]["properties"] == {
        "total": {"type": "integer"},
        "names": {"type": "array", "items": {"type": "string"}},
    }
    report = await get_json(http, f"{url}/workflows/report/schema")
    assert report["outputs"]["result"]["title"] == "Report"
    assert report["outputs"]["result"]["required"] == ["title", "count"]


async def test_openapi_folds_the_models_into_components_and_validates(nexus_server, http):
    url = await nexus_server(app_())
    doc = await get_json(http, f"{url}/openapi.json")
    validate(doc)
    components = doc["components"]["schemas"]
    assert components["Address"]["properties"]["zip"]["pattern"] == r"^\d{5}$"
    assert "$defs" not in json.dumps(doc)
    inputs = components["RegisterInputs"]
    assert inputs["properties"]["user"]["properties"]["address"] == {
        "$ref": "#/components/schemas/Address"
    }
    assert inputs["required"] == ["user"]
    items = components["HeadcountInputs"]["properties"]["users"]["items"]
    assert items["title"] == "User"
    result = components["RegisterResult"]["properties"]["result"]
    assert result["title"] == "Greeting"
    assert result["properties"]["user"] == {"$ref": "#/components/schemas/User"}
    assert set(components["User"]["properties"]) == {"name", "age", "address", "tags"}
    oldest = components["OldestResult"]["properties"]["result"]
    assert oldest == {"type": "array", "items": {"$ref": "#/components/schemas/User"}}
    assert components["ReportResult"]["properties"]["result"]["properties"] == {
        "title": {"type": "string"},
        "count": {"type": "integer"},
    }


async def test_two_models_with_one_name_get_distinct_components(nexus_server, http):
    app = app_()

    def make(field: str) -> type[BaseModel]:
        inner = create_model("Inner", **{field: (int, ...)})  # type: ignore[call-overload]
        return create_model("Outer", inner=(inner, ...))

    async def one(value: Any) -> int:
        return 1

    async def two(value: Any) -> int:
        return 2

    one.__annotations__ = {"value": make("a"), "return": int}
    two.__annotations__ = {"value": make("b"), "return": int}
    app.register("one", one)
    app.register("two", two)
    url = await nexus_server(app)
    doc = await get_json(http, f"{url}/openapi.json")
    validate(doc)
    components = doc["components"]["schemas"]
    assert set(components["Inner"]["properties"]) == {"a"}
    assert set(components["Inner2"]["properties"]) == {"b"}
    inner = components["TwoInputs"]["properties"]["value"]["properties"]["inner"]
    assert inner == {"$ref": "#/components/schemas/Inner2"}
    status, body = await execute(http, url, "two", {"value": {"inner": {"b": 1}}})
    assert (status, body["result"]) == (200, 2)


# -- the optional dependency -----------------------------------------------------------------------
BLOCKED = textwrap.dedent(
    """
    import sys
    sys.modules["pydantic"] = None  # "import pydantic" now raises ImportError
    import nexus_aio
    from nexus_aio.cli import main
    from nexus_aio.openapi.document import build_openapi
    from nexus_aio.testing import make_app
    build_openapi(make_app())
    loaded = [m for m, module in sys.modules.items() if module is not None]
    assert not [m for m in loaded if m.startswith("pydantic")], loaded
    sys.argv = ["nexus-aio", "serve", "--host", "127.0.0.1", "--port", sys.argv[1]]
    main()
    """
)


def test_without_pydantic_the_core_imports_and_serves(tmp_path):
    port = free_port()
    # The mcp plugin's SDK needs pydantic (installed with it): the claim is about the core.
    env = {**os.environ, "NEXUS_DATABASE": ":memory:", "NEXUS_DISABLE_PLUGINS": "mcp"}
    log = (tmp_path / "out.txt").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED, str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/workflows/sum/execute",
            data=json.dumps({"inputs": {"a": 1, "b": 2}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read())["result"] == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as resp:
            assert "paths" in json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
    output = (tmp_path / "out.txt").read_text()
    assert "Traceback" not in output, output


def test_workflows_without_models_run_their_own_function_unwrapped():
    app = app_()
    plain = app.workflows["sum"]  # a bundled example: no model in or out
    assert plain.run.__self__.fn is plain.source  # type: ignore[attr-defined]
    converted = app.workflows["register"]
    assert converted.run.__self__.fn is not converted.source  # type: ignore[attr-defined]
