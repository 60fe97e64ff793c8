"""``Idempotency-Key`` under ``serve --workers 2`` with the default SQLite store: repeats of a
request in flight on either worker get the original's answer, and the workflow runs once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from worker_probe import wait_for_workers

from nexus_aio.testing import ServerProcess, parse_sse

APP = """
import asyncio
import os

from aiohttp import web

from nexus_aio import Context, Nexus, hookimpl


class WorkerPid:
    \"\"\"Every plain response says which worker answered it.\"\"\"

    __name__ = "worker_pid"

    @hookimpl
    def register_middlewares(self, nexus):
        @web.middleware
        async def pid_header(request, handler):
            response = await handler(request)
            if not response.prepared:
                response.headers["X-Worker-PID"] = str(os.getpid())
            return response

        return [pid_header]


app = Nexus(plugins=[WorkerPid()])


@app.workflow()
async def pid() -> int:
    return os.getpid()


@app.workflow()
async def slow(n: int, ctx: Context) -> dict:
    with open("runs.txt", "a") as runs:  # one line per real run, whichever worker runs it
        runs.write(f"{n}\\n")
    ctx.progress(0.5, "halfway")
    await asyncio.sleep(0.6)
    return {"n": n, "pid": os.getpid()}
"""

REPEATS = 12


def _burst(url: str, body: dict, key: str) -> list[requests.Response]:
    """``REPEATS`` identical requests at once, each on a new connection (either worker)."""

    def send(_: int) -> requests.Response:
        return requests.post(
            f"{url}/workflows/slow/execute",
            json=body,
            headers={"Idempotency-Key": key, "Connection": "close"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=REPEATS) as pool:
        return list(pool.map(send, range(REPEATS)))


def _runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_repeats_in_flight_across_two_workers_get_the_original_answer_and_run_once(tmp_path):
    (tmp_path / "slowapp.py").write_text(APP)
    runs = tmp_path / "runs.txt"
    server = ServerProcess(
        ["serve", "--app", "slowapp:app", "--workers", "2"],
        cwd=tmp_path,
        env={"NEXUS_DATABASE": str(tmp_path / "nexus.db")},
    )
    with server:
        wait_for_workers(server.url)

        # sync: every repeat waits for the original's envelope, on whichever worker it landed
        answers: list[requests.Response] = []
        for attempt in range(5):  # until the repeats were spread over both workers
            answers = _burst(server.url, {"inputs": {"n": attempt}}, f"sync-{attempt}")
            assert {resp.status_code for resp in answers} == {200}, [r.text for r in answers]
            if len({resp.headers["X-Worker-PID"] for resp in answers}) == 2:
                break
        assert len({resp.headers["X-Worker-PID"] for resp in answers}) == 2
        assert {resp.status_code for resp in answers} == {200}
        assert len({resp.content for resp in answers}) == 1
        assert sum("Idempotent-Replayed" not in resp.headers for resp in answers) == 1
        assert _runs(runs) == [str(n) for n in range(attempt + 1)]  # one run per key

        # async: every repeat gets the original 202
        answers = _burst(server.url, {"inputs": {"n": 100}, "mode": "async"}, "async-1")
        assert {resp.status_code for resp in answers} == {202}
        assert len({resp.content for resp in answers}) == 1
        assert len({resp.headers["Location"] for resp in answers}) == 1
        execution_id = answers[0].json()["workflow_id"]
        record = requests.get(f"{server.url}/executions/{execution_id}?wait=10", timeout=15)
        assert record.json()["status"] == "succeeded"

        # stream: every repeat follows the one execution from its first event to its end
        answers = _burst(server.url, {"inputs": {"n": 200}, "mode": "stream"}, "stream-1")
        streams = [parse_sse(resp.text) for resp in answers]
        assert all(events[-1][1] == "complete" for events in streams), [
            resp.text for resp in answers
        ]
        assert {json.dumps(events) for events in streams} == {json.dumps(streams[0])}
        assert [event for _, event, _ in streams[0]] == ["start", "progress", "complete"]

        assert sorted(_runs(runs), key=int) == [*(str(n) for n in range(attempt + 1)), "100", "200"]
    server.stop()
