"""The benchmark compares like with like: checked without wrk, over real HTTP.

- the bodies ``scripts/wrk_unique_body.lua`` makes are unique and nexus_aio answers them with 200;
- the bare aiohttp floor answers with the same envelope fields as nexus_aio;
- the driver reads wrk's summary line and picks the median run.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from aiohttp import web

from nexus_aio.testing import make_app

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def lua_bodies(start: int, count: int, thread: int = 1) -> list[bytes]:
    """The bodies the Lua script sends, from its own format string (so a change there shows)."""
    lua = (SCRIPTS / "wrk_unique_body.lua").read_text()
    match = re.search(r"string\.format\('(\{\"inputs\".*?\})', counter, thread_number\)", lua)
    assert match, "the Lua body format changed: update this test"
    template = match.group(1)
    return [(template % (a, thread)).encode() for a in range(start, start + count)]


@pytest.fixture
async def bare_url() -> AsyncIterator[str]:
    runner = web.AppRunner(load_script("bench_bare_aiohttp").build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_lua_bodies_are_unique_and_accepted_by_nexus_aio(
    nexus_server, http: aiohttp.ClientSession
) -> None:
    url = await nexus_server(make_app())
    bodies = lua_bodies(start=50_000_001, count=5) + lua_bodies(start=100_000_001, count=5)
    assert len(set(bodies)) == len(bodies)
    for body in bodies:
        async with http.post(
            f"{url}/workflows/sum/execute",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            data = await resp.json()
            assert resp.status == 200, data
        inputs = json.loads(body)["inputs"]
        assert data["result"] == inputs["a"] + inputs["b"]


async def test_bare_floor_answers_with_nexus_aio_envelope_fields(
    nexus_server, bare_url: str, http: aiohttp.ClientSession
) -> None:
    nexus_url = await nexus_server(make_app())
    body = lua_bodies(start=7, count=1)[0]
    envelopes = []
    for base in (nexus_url, bare_url):
        async with http.post(
            f"{base}/workflows/sum/execute",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            envelopes.append(await resp.json())
    ours, bare = envelopes
    fields = {"success", "result", "workflow_id", "execution_time", "timestamp"}
    assert set(bare) == set(ours) == fields
    assert bare["result"] == ours["result"] == 8
    assert bare["workflow_id"].startswith("wf-") and bare["workflow_id"] != ours["workflow_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", bare["timestamp"])


async def test_bare_floor_refuses_non_integer_inputs(
    bare_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{bare_url}/workflows/sum/execute", json={"inputs": {"a": "1", "b": 2}}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["success"] is False


def test_parse_wrk_reads_the_lua_summary_line() -> None:
    bench = load_script("bench")
    out = (
        "Running 1s test\n"
        'BENCH_JSON {"requests":2000,"duration_us":2000000,"bytes":1,"p50_us":1500,'
        '"p90_us":1900,"p99_us":4200,"max_us":9000,"mean_us":1600.0,'
        '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0}}\n'
    )
    result = bench.parse_wrk(out)
    assert result.rps == 1000.0
    assert (result.p50_ms, result.p99_ms, result.errors) == (1.5, 4.2, 3)
    with pytest.raises(RuntimeError, match="no BENCH_JSON"):
        bench.parse_wrk("wrk crashed")


def test_median_run_keeps_the_latencies_of_the_median_run() -> None:
    bench = load_script("bench")
    runs = [bench.WrkResult(n, 1.0, p50, p50 * 2, 0) for n, p50 in ((300, 3.0), (100, 1.0))]
    runs.append(bench.WrkResult(200, 1.0, 2.0, 4.0, 0))
    median = bench.median_run(runs)
    assert (median.rps, median.p50_ms) == (200.0, 2.0)
