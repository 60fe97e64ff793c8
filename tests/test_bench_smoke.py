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


# -- the peers and the bench-only app -------------------------------------------------------------
async def test_fastapi_peer_envelope_has_nexus_aio_fields(
    nexus_server, http: aiohttp.ClientSession
) -> None:
    """The FastAPI peer builds its answer with ``envelope()`` (importable without FastAPI here;
    ``bench.py`` also checks the live answer's fields before measuring)."""
    import time

    url = await nexus_server(make_app())
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 3, "b": 5}}) as r:
        ours = await r.json()
    peer = load_script("bench_fastapi_app").envelope(8, time.perf_counter())
    assert set(peer) == set(ours) == load_script("bench").ENVELOPE_FIELDS
    assert peer["success"] is True and peer["result"] == ours["result"] == 8
    assert peer["workflow_id"].startswith("wf-") and len(peer["workflow_id"]) == 27
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", peer["timestamp"])
    assert isinstance(peer["execution_time"], float) and peer["execution_time"] >= 0


async def test_bench_sync_app_serves_a_plain_def_sum(
    nexus_server, http: aiohttp.ClientSession
) -> None:
    import inspect

    sync_app = load_script("bench_sync_app")
    assert not inspect.iscoroutinefunction(sync_app.sum_)
    url = await nexus_server(sync_app.app)
    async with http.post(f"{url}/workflows/sum/execute", data=lua_bodies(40, 1)[0]) as resp:
        data = await resp.json()
    assert resp.status == 200 and data["result"] == 41
    assert set(data) == load_script("bench").ENVELOPE_FIELDS


# -- CPU microseconds per request ------------------------------------------------------------------
def test_parse_proc_stat_counts_fields_after_the_command_name() -> None:
    bench = load_script("bench")
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    line = "4242 (py (x) y) S 17 4242 4242 0 -1 4194304 900 0 0 0 250 30 0 0 20 0 3 0 99 1 2\n"
    assert bench.parse_proc_stat(line) == (17, 280)
    assert bench.cpu_per_request_us(0.5, 1000) == 500.0
    assert bench.cpu_per_request_us(0.5, 0) is None


def test_process_tree_cpu_counts_a_busy_child() -> None:
    """``serve --workers`` forks: the CPU of live children counts for the server."""
    import subprocess

    bench = load_script("bench")
    child = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
        "print('busy done', flush=True)\ntime.sleep(30)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child_pid = int(proc.stdout.readline())
    try:
        assert proc.stdout.readline().strip() == "busy done"  # the child shares the pipe
        cpu = bench.process_tree_cpu_seconds(proc.pid)
        assert cpu >= 0.25, cpu
        own = bench.parse_proc_stat(Path(f"/proc/{proc.pid}/stat").read_text())[1]
        assert own / bench.CLOCK_TICKS < 0.25  # the parent alone did not burn it
    finally:
        subprocess.run(["kill", str(child_pid)], check=False)
        proc.kill()
        proc.wait()
        proc.stdout.close()


# -- async runs accounting -------------------------------------------------------------------------
def _record(status: str, result: object, created: str, started: str, finished: str) -> dict:
    return {
        "status": status,
        "result": result,
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
    }


def test_account_runs_counts_every_run_and_measures_queue_delay() -> None:
    bench = load_script("bench")
    t = "2026-12-06T07:00:00."
    submitted = [("wf-1", 1, 2), ("wf-2", 3, 4)]
    records = {
        "wf-1": _record("succeeded", 3, t + "000Z", t + "010Z", t + "020Z"),
        "wf-2": _record("succeeded", 7, t + "100Z", t + "130Z", t + "500Z"),
    }
    out = bench.account_runs(submitted, records)
    assert out["all_accounted"] and (out["accepted"], out["succeeded"]) == (2, 2)
    assert out["span_s"] == pytest.approx(0.5)
    assert out["runs_per_s"] == pytest.approx(4.0)
    assert out["queue_p99_ms"] == pytest.approx(30.0, abs=0.01)
    assert out["queue_p50_ms"] == pytest.approx(10.0, abs=0.01)
    # a lost run, a wrong answer and a failure are each not accounted for
    records["wf-2"] = _record("succeeded", 8, t + "100Z", t + "130Z", t + "500Z")
    assert bench.account_runs(submitted, records)["wrong_result"] == 1
    records["wf-2"] = _record("failed", None, t + "100Z", t + "130Z", t + "500Z")
    out = bench.account_runs(submitted, records)
    assert not out["all_accounted"] and out["statuses"] == {"succeeded": 1, "failed": 1}
    out = bench.account_runs([*submitted, ("wf-3", 0, 0)], {**records, "wf-3": None})
    assert out["missing"] == 1 and not out["all_accounted"]


async def test_async_runs_submits_and_accounts_for_every_run(nexus_server) -> None:
    bench = load_script("bench")
    url = await nexus_server(make_app())
    out = await bench.async_runs(url, seconds=0.3, submitters=4)
    assert out["accepted"] > 0 and out["rejected"] == 0
    assert out["all_accounted"], out
    assert out["succeeded"] == out["accepted"]
    assert out["runs_per_s"] > 0 and out["submit_p99_ms"] >= out["submit_p50_ms"] > 0


# -- the guard's fallback load generator and the report -------------------------------------------
async def test_aiohttp_load_generator_sends_unique_valid_bodies(bare_url: str) -> None:
    bench = load_script("bench")
    res = await bench._aiohttp_load(f"{bare_url}/workflows/sum/execute", 4, 0.3, start=1)
    assert res.requests > 0 and res.errors == 0
    assert res.rps > 0 and res.p99_ms >= res.p50_ms > 0


def test_report_marks_each_goal_pass_or_fail(tmp_path: Path) -> None:
    bench = load_script("bench")
    cfg = bench.make_config(bench.build_parser().parse_args(["--quick"]), tmp_path)
    w = bench.WrkResult
    rows = {}
    figures = {"nexus": (7500, 1.5), "nexus-sync": (5000, 1.5), "bare": (10000, 1.0)}
    figures["fastapi"] = (4000, 2.0)
    for name, (rps, p99) in figures.items():
        for conc in bench.CONCURRENCY:
            rows[(name, conc)] = {"median": w(rps, 1.0, 0.5, p99, 0, 100.0), "all": [rps]}
    execute = {
        "rows": rows,
        "labels": {n: n for n in figures},
        "rss": {n: {"idle": 1.0, "loaded": 2.0} for n in figures},
    }
    workers = {"rows": {1: w(1000, 1.0, 1, 2, 0), 2: w(1500, 1.0, 1, 2, 0)}}
    report = bench.render(cfg, "cmd", {}, {"execute": execute, "workers": workers})
    goals = report.split("## Goals", 1)[1]
    assert "**PASS** nexus req/s at c=16 vs bare aiohttp: 0.75" in goals
    assert "**FAIL** nexus-sync req/s at c=16 vs bare aiohttp: 0.50" in goals
    assert "**PASS** nexus req/s at c=16 vs FastAPI: 1.88x" in goals
    assert "**PASS** nexus p99 at c=16: 1.50 ms = 1.50x" in goals
    assert "**FAIL** `--workers 2` at c=64 vs one process: 1.50x" in goals
    assert "(not measured) nexus vs Kailash Nexus" in goals


def test_summarise_pyspy_ranks_functions_lines_and_threads() -> None:
    bench = load_script("bench")
    raw = (
        "thread (1): MainThread;<module> (nexus_aio/__main__.py:3);run_app (aiohttp/web.py:502) 6\n"
        "thread (1): MainThread;run_app (aiohttp/web.py:502);handle (/x/nexus_aio/web/app.py:80);"
        "dumps (/x/nexus_aio/web/responses.py:41) 2\n"
        "thread (2): nexus-sqlite_0;_worker (/usr/lib/concurrent/futures/thread.py:81) 2\n"
    )
    out = bench.summarise_pyspy(raw)
    assert out["samples"] == 10
    assert out["threads"] == [("MainThread", 80.0), ("nexus-sqlite_0", 20.0)]
    inclusive = dict(out["inclusive"])
    assert "run_app (aiohttp/web.py)" not in inclusive  # an entry point: on every stack
    assert inclusive["handle (web/app.py)"] == 20.0
    assert inclusive["_worker (futures/thread.py)"] == 20.0
    assert out["self"][0] == ("run_app (aiohttp/web.py:502)", 60.0)


def test_call_counts_put_each_function_in_its_layer() -> None:
    bench = load_script("bench")
    layer = bench.call_layer
    assert layer("~") == "python"  # builtins
    assert layer("<frozen abc>") == "python"
    assert layer("/v/lib/python3.11/asyncio/tasks.py") == "python"
    assert layer("/v/lib/python3.11/site-packages/aiohttp/web_app.py") == "aiohttp"
    assert layer("/v/lib/python3.11/site-packages/yarl/_url.py") == "other"
    assert layer("/repo/nexus_aio/web/app.py") == "nexus_aio"
    assert layer("/repo/plugins/nexus-aio-metrics/nexus_aio_metrics/__init__.py") == "nexus_aio"
    assert layer("/v/lib/python3.11/site-packages/nexus_aio_otel/__init__.py") == "nexus_aio"
    assert layer("/repo/scripts/bench_bare_aiohttp.py") == "handler"


def test_calls_per_request_are_counted_on_a_served_floor(tmp_path: Path) -> None:
    """``bench_calls.py`` profiles a real server only between its two signals: the floor's
    handler makes two Python calls a request (itself and its timestamp)."""
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    bench = load_script("bench")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stats = tmp_path / "floor.pstats"
    argv = [sys.executable, str(SCRIPTS / "bench_calls.py"), str(stats)]
    argv += [str(SCRIPTS / "bench_bare_aiohttp.py"), "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def execute(a: int) -> dict:
        body = json.dumps({"inputs": {"a": a, "b": 1}}).encode()
        request = urllib.request.Request(url + "/workflows/sum/execute", data=body)
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        execute(0)  # before the first signal: not counted
        # Handled before the server runs any more Python code (it has one thread): on from here.
        proc.send_signal(signal.SIGUSR2)
        results = [execute(a)["result"] for a in range(1, 21)]
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert results == [a + 1 for a in range(1, 21)]
    layers = bench.count_calls(stats, 20)
    # Two calls (cProfile counts a coroutine again each time it resumes: a body that arrived in
    # two reads adds one); startup, counted by mistake, would add thousands.
    assert 2.0 <= layers["handler"] <= 2.25
    assert layers["nexus_aio"] == 0.0
    assert layers["aiohttp"] > 10 and layers["python"] > 10


def test_soak_report_replaces_its_own_section_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # soak.py imports its sibling soak_hostile.py
    soak = load_script("soak")
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nfigures\n")
    soak.write_report(report, ["--hostile"], "first run\nPASS\n")
    soak.write_report(report, ["--hostile", "--duration", "5"], "second run\nPASS\n")
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nfigures\n")
    assert text.count(soak.SOAK_MARKER) == 1 and "second run" in text and "first run" not in text
    assert load_script("bench").SOAK_MARKER == soak.SOAK_MARKER  # bench.py keeps this section
