"""``GET /metrics`` over real HTTP: the output parses and its counts match the requests made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexus_aio import hookimpl
from nexus_aio.testing import make_app

SUM_OK = {"inputs": {"a": 1, "b": 2}}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, tuple], float]:
    """Every sample as ``{(name, sorted labels): value}``, parsed by prometheus-client."""
    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_total(samples: dict, workflow: str, status: str) -> float | None:
    return samples.get(("nexus_requests_total", (("status", status), ("workflow", workflow))), None)


async def test_plugin_is_listed_by_get_plugins_with_version_and_hooks(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.get(f"{url}/plugins") as resp:
        plugins = (await resp.json())["plugins"]
    plugin = next(p for p in plugins if p["name"] == "metrics")
    assert plugin["version"] == "0.1.0"
    assert plugin["hooks"] == [
        "execution_finished",
        "execution_started",
        "register_cleanup_ctx",
        "register_routes",
    ]


async def test_counts_match_the_requests_made(nexus_server, http):
    url = await nexus_server(make_app())
    for _ in range(3):
        async with http.post(f"{url}/workflows/sum/execute", json=SUM_OK) as resp:
            assert resp.status == 200
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 1}}) as resp:
        assert resp.status == 400
    samples = await scrape(http, url)
    assert requests_total(samples, "sum", "200") == 3
    assert requests_total(samples, "sum", "400") == 1
    key = ("nexus_request_duration_seconds_count", (("workflow", "sum"),))
    assert samples[key] == 4
    assert samples[("nexus_executions_total", (("status", "succeeded"), ("workflow", "sum")))] == 3
    assert samples[("nexus_executions_in_progress", (("workflow", "sum"),))] == 0


async def test_metrics_scrapes_are_not_counted_and_other_routes_count_under_dash(
    nexus_server, http
):
    url = await nexus_server(make_app())
    await scrape(http, url)
    async with http.get(f"{url}/health") as resp:
        assert resp.status == 200
    async with http.post(f"{url}/workflows/nope/execute", json={}) as resp:
        assert resp.status == 404  # an unknown name never becomes a label
    async with http.get(f"{url}/workflows/made-up-name/schema") as resp:
        assert resp.status == 404
    samples = await scrape(http, url)
    assert requests_total(samples, "-", "200") == 1
    assert requests_total(samples, "-", "404") == 2
    assert not any(labels and dict(labels).get("workflow") == "nope" for _, labels in samples)
    assert sum(v for (name, _), v in samples.items() if name == "nexus_requests_total") == 3


async def test_rate_limited_responses_are_counted(nexus_server, http):
    app = make_app()

    async def limited() -> int:
        return 1

    app.register("limited", limited, rate_limit=1)
    url = await nexus_server(app)
    statuses = []
    for _ in range(3):
        async with http.post(f"{url}/workflows/limited/execute", json={}) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 429, 429]
    samples = await scrape(http, url)
    assert samples[("nexus_rate_limited_total", (("workflow", "limited"),))] == 2
    assert requests_total(samples, "limited", "429") == 2


async def test_executions_in_progress_rises_while_one_runs(nexus_server, http):
    app = make_app()
    release = asyncio.Event()
    running = asyncio.Event()

    async def gated() -> str:
        running.set()
        await release.wait()
        return "done"

    app.register("gated", gated)
    url = await nexus_server(app)
    call = asyncio.create_task(http.post(f"{url}/workflows/gated/execute", json={}))
    await running.wait()
    gauge = ("nexus_executions_in_progress", (("workflow", "gated"),))
    assert (await scrape(http, url))[gauge] == 1
    release.set()
    resp = await call
    assert resp.status == 200
    resp.release()
    assert (await scrape(http, url))[gauge] == 0


async def test_a_cancelled_execution_leaves_the_gauge_at_zero(nexus_server, http):
    app = make_app()
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    app.register("hang", hang)
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/hang/execute", json={"mode": "async"}) as resp:
        wid = (await resp.json())["workflow_id"]
    async with http.delete(f"{url}/executions/{wid}") as resp:
        assert resp.status in (200, 202)
    samples = await scrape(http, url)
    assert samples[("nexus_executions_in_progress", (("workflow", "hang"),))] == 0
    key = ("nexus_executions_total", (("status", "cancelled"), ("workflow", "hang")))
    assert samples[key] == 1


class DenyAll:
    """A plugin whose middleware refuses every request before the handler runs."""

    @hookimpl(tryfirst=True)
    def register_middlewares(self, nexus: Any) -> list[Any]:
        from aiohttp import web

        from nexus_aio.errors import Unauthorized

        @web.middleware
        async def deny(request: web.Request, handler: Any) -> Any:
            if request.path.endswith("/execute"):
                raise Unauthorized()
            return await handler(request)

        return [deny]


async def test_refusals_by_other_plugin_middlewares_are_counted_and_timed(nexus_server, http):
    url = await nexus_server(make_app(plugins=[DenyAll()]))
    async with http.post(f"{url}/workflows/sum/execute", json=SUM_OK) as resp:
        assert resp.status == 401
    samples = await scrape(http, url)
    assert requests_total(samples, "sum", "401") == 1  # the route names the workflow
    assert samples[("nexus_request_duration_seconds_count", (("workflow", "sum"),))] == 1


async def test_two_apps_in_one_process_keep_separate_counts(nexus_server, http):
    first = await nexus_server(make_app())
    second = await nexus_server(make_app())
    async with http.post(f"{first}/workflows/sum/execute", json=SUM_OK) as resp:
        assert resp.status == 200
    assert requests_total(await scrape(http, first), "sum", "200") == 1
    assert requests_total(await scrape(http, second), "sum", "200") is None


async def test_metrics_is_never_rate_limited(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=1))
    for _ in range(3):
        await scrape(http, url)  # asserts 200 each time


async def test_scrape_text_has_every_family_with_help_type_and_created_series(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.post(f"{url}/workflows/sum/execute", json=SUM_OK) as resp:
        assert resp.status == 200
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    for name, kind in (
        ("nexus_requests_total", "counter"),
        ("nexus_request_duration_seconds", "histogram"),
        ("nexus_executions_in_progress", "gauge"),
        ("nexus_executions_total", "counter"),
        ("nexus_rate_limited_total", "counter"),
    ):
        assert f"\n# TYPE {name} {kind}\n" in f"\n{text}"
        assert f"\n# HELP {name} " in f"\n{text}"
    lines = text.splitlines()
    assert 'nexus_requests_total{status="200",workflow="sum"} 1.0' in lines
    assert 'nexus_request_duration_seconds_bucket{le="+Inf",workflow="sum"} 1.0' in lines
    assert 'nexus_request_duration_seconds_count{workflow="sum"} 1.0' in lines
    assert 'nexus_executions_total{status="succeeded",workflow="sum"} 1.0' in lines
    for created in (
        'nexus_requests_created{status="200",workflow="sum"} ',
        'nexus_request_duration_seconds_created{workflow="sum"} ',
        'nexus_executions_created{status="succeeded",workflow="sum"} ',
    ):
        assert any(line.startswith(created) for line in lines)
    assert not any(line.startswith("nexus_executions_in_progress_created") for line in lines)
