"""Distributed execution with arq: real worker processes, a real server process, real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from nexus_aio.testing import ServerProcess

APP = """
import asyncio
from nexus_aio import Context, Nexus

app = Nexus()


@app.workflow()
async def job(ctx: Context, seconds: float = 1.0) -> dict:
    for i in range(10):
        await asyncio.sleep(seconds / 10)
        ctx.progress((i + 1) / 10)
    return {"done": seconds}
"""


class Cluster:
    """One serving instance and any number of ``worker`` processes on one Redis."""

    def __init__(self, tmp_path: Path, redis_url: str, **settings: str) -> None:
        (tmp_path / "jobapp.py").write_text(APP)
        self.cwd = tmp_path
        self.env = {
            "NEXUS_REDIS_URL": redis_url,
            "NEXUS_REDIS_EXECUTE_ASYNC": "1",
            "NEXUS_REQUEST_TIMEOUT": "3",
            "NEXUS_RUN_TIMEOUT": "3",
            "NEXUS_REDIS_WORKER_GRACE": "0.5",
            "NEXUS_REDIS_POLL_DELAY": "0.05",
            **settings,
        }
        self.server = ServerProcess(["serve", "--app", "jobapp:app"], cwd=tmp_path, env=self.env)
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexus_aio", "worker", "--app", "jobapp:app"],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.workers.append(proc)
        return proc

    def submit(self, seconds: float) -> str:
        resp = requests.post(
            f"{self.server.url}/workflows/job/execute",
            json={"inputs": {"seconds": seconds}, "mode": "async"},
            timeout=5,
        )
        assert resp.status_code == 202, resp.text
        return str(resp.json()["workflow_id"])

    def record(self, execution_id: str, wait: float = 0) -> dict[str, Any]:
        resp = requests.get(
            f"{self.server.url}/executions/{execution_id}", params={"wait": wait}, timeout=wait + 5
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait_status(self, execution_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.record(execution_id)
            if record["status"] == status:
                return record
            time.sleep(0.05)
        raise AssertionError(f"{execution_id} never reached {status}: {record}")

    def events(self, execution_id: str) -> list[str]:
        resp = requests.get(f"{self.server.url}/executions/{execution_id}/events", timeout=10)
        return [line[7:] for line in resp.text.splitlines() if line.startswith("event: ")]

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.server.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: Any) -> Any:
    made: list[Cluster] = []

    def make(**settings: str) -> Cluster:
        c = Cluster(tmp_path, redis_server.url, **settings)
        made.append(c)
        c.server.__enter__()
        return c

    yield make
    for c in made:
        c.stop()


def test_async_run_executes_on_a_worker_not_in_the_server(cluster: Any) -> None:
    c = cluster()
    c.start_worker()
    execution_id = c.submit(0.2)
    record = c.record(execution_id, wait=10)
    assert record["status"] == "succeeded"
    assert record["result"] == {"done": 0.2}
    kinds = c.events(execution_id)
    assert kinds[0] == "start" and kinds[-1] == "complete" and "progress" in kinds


def test_worker_killed_mid_run_and_another_worker_completes_it(cluster: Any) -> None:
    c = cluster()
    first = c.start_worker()
    execution_id = c.submit(1.0)
    c.wait_status(execution_id, "running")
    first.send_signal(signal.SIGKILL)
    first.wait()
    c.start_worker()
    record = c.record(execution_id, wait=15)
    assert record["status"] == "succeeded", record
    kinds = c.events(execution_id)
    assert "retry" in kinds and kinds[-1] == "complete"


def test_worker_lost_on_every_try_fails_the_execution_clearly(cluster: Any) -> None:
    c = cluster(NEXUS_REDIS_MAX_TRIES="1")
    first = c.start_worker()
    execution_id = c.submit(1.0)
    c.wait_status(execution_id, "running")
    first.send_signal(signal.SIGKILL)
    first.wait()
    c.start_worker()
    record = c.record(execution_id, wait=15)
    assert record["status"] == "failed", record
    assert record["error"]["type"] == "WorkerLost"


def test_cancel_on_the_server_reaches_the_worker(cluster: Any) -> None:
    c = cluster()
    c.start_worker()
    execution_id = c.submit(3.0)
    c.wait_status(execution_id, "running")
    resp = requests.delete(f"{c.server.url}/executions/{execution_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"  # the worker acknowledged before the answer
    record = c.record(execution_id)
    assert record["status"] == "cancelled" and record["error"]["type"] == "Cancelled"


def test_worker_and_server_recover_after_a_redis_restart(cluster: Any, redis_server: Any) -> None:
    c = cluster()
    worker = c.start_worker()
    assert c.record(c.submit(0.1), wait=10)["status"] == "succeeded"
    redis_server.stop()
    resp = requests.post(
        f"{c.server.url}/workflows/job/execute", json={"inputs": {}, "mode": "async"}, timeout=10
    )
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "StoreUnavailable"
    redis_server.start()
    # queued now, run once the worker has reconnected on its own (1 s back-off)
    assert c.record(c.submit(0.1), wait=15)["status"] == "succeeded"
    assert worker.poll() is None  # the same process: not restarted
