"""Registering functions and DAGs: inputs from type hints, rejections with clear messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nexus_aio import Context, Nexus, Workflow
from nexus_aio.errors import RegistrationError, ValidationError, WorkflowNotFound


def app() -> Nexus:
    return Nexus(database=":memory:", load_entry_points=False)


def test_decorator_and_register_accept_sync_async_and_generators():
    nx = app()

    @nx.workflow()
    def one(x: int) -> int:
        return x

    @nx.workflow("two", description="second")
    async def second(x: int = 2) -> int:
        return x

    async def gen(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    nx.register("gen", gen)
    assert set(nx.workflows) == {"one", "two", "gen"}
    assert nx.workflows["two"].description == "second"
    assert nx.workflows["gen"].kind == "stream"
    assert nx.workflows["one"].schema.fields["x"].required is True
    assert nx.workflows["two"].schema.fields["x"].default == 2


def test_context_parameter_is_injected_not_an_input():
    nx = app()

    @nx.workflow()
    async def uses(ctx: Context, n: int) -> int:
        return n

    assert list(nx.workflows["uses"].schema.fields) == ["n"]


def test_duplicate_names_are_rejected():
    nx = app()
    nx.register("a", lambda: 1)
    with pytest.raises(RegistrationError, match="already registered"):
        nx.register("a", lambda: 2)


def test_dag_inputs_are_the_unconnected_parameters():
    wf = Workflow("w")
    wf.add_node("load", lambda path, limit=10: {"rows": [path] * limit})
    wf.add_node("count", lambda rows, label: {"n": len(rows), "label": label})
    wf.connect("load", "count", {"rows": "rows"})
    nx = app()
    compiled = nx.register("w", wf)
    assert set(compiled.schema.fields) == {"path", "limit", "label"}
    assert compiled.schema.fields["limit"].required is False


def test_dag_rejects_cycles_unknown_nodes_and_missing_params():
    def node(x=None):
        return {"x": x}

    cyclic = Workflow("c").add_node("a", node).add_node("b", node)
    cyclic.connect("a", "b", {"x": "x"}).connect("b", "a", {"x": "x"})
    with pytest.raises(RegistrationError, match="cycle"):
        app().register("c", cyclic)
    unknown = Workflow("u").add_node("a", node).connect("a", "ghost", {"x": "x"})
    with pytest.raises(RegistrationError, match="unknown node 'ghost'"):
        app().register("u", unknown)
    missing = Workflow("m").add_node("a", node).add_node("b", node)
    missing.connect("a", "b", {"x": "nope"})
    with pytest.raises(RegistrationError, match="missing parameter 'nope'"):
        app().register("m", missing)


async def test_dag_runs_ready_nodes_concurrently_and_maps_several_sinks():
    running = 0
    peak = 0

    async def branch(seed: int) -> dict:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return {"value": seed * 2}

    wf = Workflow("fan")
    wf.add_node("start", lambda seed: {"seed": seed})
    wf.add_node("left", branch).add_node("right", branch)
    wf.connect("start", "left", {"seed": "seed"}).connect("start", "right", {"seed": "seed"})
    nx = app()
    nx.register("fan", wf)
    result = await nx.execute_workflow("fan", {"seed": 3})
    await nx.aclose()
    assert result == {"left": {"value": 6}, "right": {"value": 6}}
    assert peak == 2


async def test_execute_workflow_and_its_alias_validate_inputs():
    nx = app()

    @nx.workflow()
    async def double(n: int) -> int:
        return n * 2

    assert await nx.execute_workflow("double", {"n": 4}) == 8
    assert await nx._execute_workflow("double", {"n": 5}) == 10
    with pytest.raises(ValidationError):
        await nx.execute_workflow("double", {"n": "5"})
    with pytest.raises(WorkflowNotFound):
        await nx.execute_workflow("triple", {})
    await nx.aclose()


async def test_dag_node_failure_names_the_node():
    def boom(x: int) -> int:
        raise ValueError("bad x")

    wf = Workflow("f").add_node("ok", lambda x: {"x": x}).add_node("boom", boom)
    wf.connect("ok", "boom", {"x": "x"})
    nx = app()
    nx.register("f", wf)
    with pytest.raises(Exception, match="Node 'boom' failed: bad x"):
        await nx.execute_workflow("f", {"x": 1})
    await nx.aclose()
