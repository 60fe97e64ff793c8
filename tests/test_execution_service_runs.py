"""How runs are bounded and where they are kept (issue 11, "Why" and item 2).

- ``python -m nexus_aio run`` stores its execution through the storage backend, so a server on
  the same database finds it afterwards.
- Async runs are jobs, not HTTP requests: ``request_timeout`` bounds only sync and stream
  requests, ``run_timeout`` bounds async runs (a workflow's own ``timeout`` wins).
- Beyond ``max_concurrent_requests`` async submissions wait in a queue (sync and stream requests
  still get 503), and beyond ``max_queued_runs`` they get 503 ``ServiceUnavailable``.

Workflows here wait on gates the test opens; nothing sleeps to let things happen, and status
checks poll with a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from nexus_aio import Nexus
from nexus_aio.testing import ServerProcess, make_app


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    return make_app(**settings)


async def execute(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    inputs: dict[str, Any] | None = None,
    mode: str = "sync",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A non-stream execute: status, headers and JSON body."""
    async with http.post(
        f"{url}/workflows/{name}/execute", json={"inputs": inputs or {}, "mode": mode}
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def record_of(
    http: aiohttp.ClientSession, url: str, execution_id: str, wait: float = 0
) -> dict[str, Any]:
    query = f"?wait={wait}" if wait else ""
    async with http.get(f"{url}/executions/{execution_id}{query}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def statuses_become(
    http: aiohttp.ClientSession,
    url: str,
    ids: list[str],
    expected: dict[str, int],
    deadline: float = 5.0,
) -> None:
    """Poll the records of ``ids`` until their statuses count as ``expected``."""
    seen: collections.Counter[str] = collections.Counter()
    try:
        async with asyncio.timeout(deadline):
            while True:
                records = [await record_of(http, url, i) for i in ids]
                seen = collections.Counter(r["status"] for r in records)
                if seen == collections.Counter(expected):
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"statuses {dict(seen)} never became {expected}") from None


# -- `run` uses the storage backend ----------------------------------------------------------------
RUN_APP = """
from nexus_aio import Nexus

app = Nexus()


@app.workflow()
def add(a: int, b: int) -> int:
    return a + b
"""


def test_run_command_stores_its_execution_where_a_server_on_the_same_database_finds_it(
    tmp_path: Path,
):
    (tmp_path / "runapp.py").write_text(RUN_APP)
    database = str(tmp_path / "nexus.db")
    done = subprocess.run(
        [sys.executable, "-m", "nexus_aio", "run", "add", "--inputs", '{"a": 1, "b": 2}',
         "--app", "runapp:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"NEXUS_DATABASE": database, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["success"] is True and envelope["result"] == 3
    env = {"NEXUS_DATABASE": database}
    with ServerProcess(["serve", "--app", "runapp:app"], cwd=tmp_path, env=env) as server:
        response = httpx.get(f"{server.url}/executions/{envelope['workflow_id']}", timeout=10)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["status"] == "succeeded" and record["result"] == 3
    assert record["name"] == "add" and record["inputs"] == {"a": 1, "b": 2}


# -- request_timeout and run_timeout ---------------------------------------------------------------
def napping_app(**settings: Any) -> Nexus:
    app = app_(**settings)

    @app.workflow("nap")
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)  # the workflow's own work: it outlasts request_timeout
        return "rested"

    return app


async def test_async_runs_are_not_cut_by_request_timeout(nexus_server, http):
    url = await nexus_server(napping_app(request_timeout=0.5))
    status, _, accepted = await execute(http, url, "nap", {"seconds": 1.5}, mode="async")
    assert status == 202
    record = await record_of(http, url, accepted["workflow_id"], wait=10)
    assert record["status"] == "succeeded", record
    assert record["result"] == "rested"


async def test_sync_and_stream_requests_are_still_cut_by_request_timeout(nexus_server, http):
    url = await nexus_server(napping_app(request_timeout=0.5))
    status, _, body = await execute(http, url, "nap", {"seconds": 1.5})
    assert status == 504 and body["error"]["type"] == "Timeout"
    async with http.post(
        f"{url}/workflows/nap/execute", json={"inputs": {"seconds": 1.5}, "mode": "stream"}
    ) as resp:
        assert resp.status == 200
        text = await resp.text()
    events = [block.splitlines() for block in text.split("\n\n") if block]
    assert [lines[1] for lines in events] == ["event: start", "event: error"]
    assert json.loads(events[-1][2].removeprefix("data: "))["error"]["type"] == "Timeout"


async def test_run_timeout_bounds_async_runs(nexus_server, http):
    app = app_(run_timeout=0.5)

    @app.workflow("stuck")
    async def stuck() -> None:
        await asyncio.Event().wait()  # never set: only a timeout ends it

    url = await nexus_server(app)
    status, _, accepted = await execute(http, url, "stuck", mode="async")
    assert status == 202
    record = await record_of(http, url, accepted["workflow_id"], wait=5)
    assert record["status"] == "timed_out", record
    assert record["error"]["type"] == "Timeout"


async def test_a_workflow_timeout_wins_over_run_timeout(nexus_server, http):
    longer = app_(run_timeout=0.3)

    @longer.workflow("patient", timeout=10)
    async def patient() -> str:
        await asyncio.sleep(1.0)  # longer than run_timeout, well within its own timeout
        return "done"

    shorter = app_(run_timeout=60)

    @shorter.workflow("hasty", timeout=0.3)
    async def hasty() -> None:
        await asyncio.Event().wait()

    longer_url = await nexus_server(longer)
    shorter_url = await nexus_server(shorter)
    _, _, accepted = await execute(http, longer_url, "patient", mode="async")
    record = await record_of(http, longer_url, accepted["workflow_id"], wait=10)
    assert (record["status"], record.get("result")) == ("succeeded", "done"), record
    _, _, accepted = await execute(http, shorter_url, "hasty", mode="async")
    record = await record_of(http, shorter_url, accepted["workflow_id"], wait=10)
    assert record["status"] == "timed_out", record
    assert record["error"]["details"] == {"timeout": 0.3}


def test_run_timeout_and_max_queued_runs_have_defaults_and_read_the_environment(monkeypatch):
    monkeypatch.delenv("NEXUS_RUN_TIMEOUT", raising=False)
    monkeypatch.delenv("NEXUS_MAX_QUEUED_RUNS", raising=False)
    defaults = app_()
    assert defaults.api.run_timeout == 3600
    assert defaults.api.max_queued_runs == 10000
    monkeypatch.setenv("NEXUS_RUN_TIMEOUT", "12.5")
    monkeypatch.setenv("NEXUS_MAX_QUEUED_RUNS", "7")
    from_env = app_()
    assert from_env.api.run_timeout == 12.5
    assert from_env.api.max_queued_runs == 7


# -- the queue -------------------------------------------------------------------------------------
class Gated:
    """A workflow that waits on a gate and counts how many runs are inside it at once."""

    def __init__(self, app: Nexus) -> None:
        self.gate = asyncio.Event()
        self.inside = 0
        self.most_inside = 0

        @app.workflow("gated")
        async def gated(n: int) -> int:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            try:
                await self.gate.wait()
            finally:
                self.inside -= 1
            return n


async def test_async_submissions_beyond_max_concurrent_requests_wait_in_the_queue(
    nexus_server, http
):
    app = app_(max_concurrent_requests=2)
    gated = Gated(app)
    url = await nexus_server(app)
    submitted = [await execute(http, url, "gated", {"n": n}, mode="async") for n in range(5)]
    assert [status for status, _, _ in submitted] == [202] * 5, submitted
    ids = [body["workflow_id"] for _, _, body in submitted]
    await statuses_become(http, url, ids, {"running": 2, "queued": 3})
    # Sync and stream requests beyond the limit are still refused, as before.
    status, headers, body = await execute(http, url, "sum", {"a": 1, "b": 1})
    assert status == 503 and body["error"]["type"] == "ServiceUnavailable"
    assert "Retry-After" in headers
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}, "mode": "stream"}
    ) as resp:
        assert resp.status == 503 and "Retry-After" in resp.headers
    gated.gate.set()
    records = [await record_of(http, url, i, wait=10) for i in ids]
    assert [(r["status"], r.get("result")) for r in records] == [("succeeded", n) for n in range(5)]
    assert gated.most_inside == 2


async def test_async_submissions_beyond_max_queued_runs_get_503_with_retry_after(
    nexus_server, http
):
    app = app_(max_concurrent_requests=1, max_queued_runs=1)
    gated = Gated(app)
    url = await nexus_server(app)
    status, _, first = await execute(http, url, "gated", {"n": 1}, mode="async")
    assert status == 202
    await statuses_become(http, url, [first["workflow_id"]], {"running": 1})
    status, _, second = await execute(http, url, "gated", {"n": 2}, mode="async")
    assert status == 202, second
    status, headers, third = await execute(http, url, "gated", {"n": 3}, mode="async")
    assert status == 503, third
    assert third["success"] is False and third["error"]["type"] == "ServiceUnavailable"
    assert "Retry-After" in headers
    gated.gate.set()
    for accepted, n in ((first, 1), (second, 2)):
        record = await record_of(http, url, accepted["workflow_id"], wait=10)
        assert (record["status"], record.get("result")) == ("succeeded", n), record
