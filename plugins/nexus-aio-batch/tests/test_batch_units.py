"""The batch plugin's pieces called directly: parsing, the summary, bounded runs, its hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import nexus_aio_batch
import pytest
from aiohttp import web
from nexus_aio_batch import BatchItem, parse_batch, run_bounded, summarize

from nexus_aio.errors import ConfigurationError, ValidationError
from nexus_aio.testing import make_app


def test_parse_batch_returns_items_in_order_with_their_index():
    body = {"workflows": [{"name": "a"}, {"name": "b", "inputs": {"x": 1}}]}
    items = parse_batch(body, 10)
    assert items == [
        BatchItem(0, "a", {"name": "a"}),
        BatchItem(1, "b", {"name": "b", "inputs": {"x": 1}}),
    ]


@pytest.mark.parametrize(
    ("body", "field", "received"),
    [
        ("text", "body", "string"),
        ({"workflows": None}, "workflows", "null"),
        ({"workflows": [{"name": ""}]}, "workflows[0].name", "string"),
        ({"workflows": [{"name": "a"}, 7]}, "workflows[1]", "integer"),
    ],
)
def test_parse_batch_names_the_malformed_field(body, field, received):
    with pytest.raises(ValidationError) as info:
        parse_batch(body, 10)
    assert info.value.details["field"] == field
    assert info.value.details["received"] == received


def test_parse_batch_accepts_exactly_max_items_and_rejects_one_more():
    assert len(parse_batch({"workflows": [{"name": "a"}] * 5}, 5)) == 5
    with pytest.raises(ValidationError, match="exceeds the limit of 5"):
        parse_batch({"workflows": [{"name": "a"}] * 6}, 5)


def test_summarize_counts_and_is_successful_only_when_every_item_succeeded():
    ok, bad = {"success": True}, {"success": False}
    assert summarize([ok, ok], 0.5) == {
        "success": True,
        "results": [ok, ok],
        "total": 2,
        "succeeded": 2,
        "failed": 0,
        "execution_time": 0.5,
    }
    summary = summarize([ok, bad, bad], 1.0)
    assert (summary["success"], summary["succeeded"], summary["failed"]) == (False, 1, 2)


async def test_run_bounded_places_results_by_index_whatever_the_finish_order():
    gates = [asyncio.Event() for _ in range(4)]

    async def run_one(item: BatchItem) -> dict[str, Any]:
        if item.index == 0:  # the first item finishes last
            for gate in gates[1:]:
                await gate.wait()
        else:
            gates[item.index].set()
        return {"index": item.index}

    items = [BatchItem(i, "w", {}) for i in range(4)]
    results = await run_bounded(items, run_one, 4, concurrency=4)
    assert results == [{"index": i} for i in range(4)]


async def test_run_bounded_never_runs_more_than_concurrency_items():
    running, peak = 0, 0

    async def run_one(item: BatchItem) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return {}

    await run_bounded((BatchItem(i, "w", {}) for i in range(9)), run_one, 9, concurrency=2)
    assert peak == 2


def test_register_routes_hook_adds_post_workflows_batch():
    routes = nexus_aio_batch.register_routes(nexus=make_app())
    assert [(r.method, r.path) for r in routes] == [("POST", "/workflows/batch")]
    assert isinstance(routes[0], web.RouteDef)


def test_a_non_positive_batch_setting_fails_at_startup():
    with pytest.raises(ConfigurationError, match="batch_concurrency"):
        nexus_aio_batch.register_routes(nexus=make_app(batch_concurrency=0))


def test_openapi_spec_hook_documents_the_route_with_the_item_limit():
    class Spec:
        def __init__(self) -> None:
            self.paths: dict[str, Any] = {}

        def path(self, path: str, operations: dict[str, Any]) -> None:
            self.paths[path] = operations

    spec = Spec()
    nexus_aio_batch.openapi_spec(nexus=make_app(api_prefix="/api", batch_max_items=7), spec=spec)
    post = spec.paths["/api/workflows/batch"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["workflows"]["maxItems"] == 7
    assert set(post["responses"]) == {"200", "400", "413", "429"}
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert post["responses"]["400"]["content"]["application/json"]["schema"] == envelope
    assert "Retry-After" in post["responses"]["429"]["headers"]
