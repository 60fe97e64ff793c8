"""Retries of async runs on arq workers (arq's ``Retry``): real worker processes, a real server
process, real Redis. Attempts are counted in files, since each may run in another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from nexus_aio.testing import ServerProcess, parse_sse

APP = """
from pathlib import Path

from nexus_aio import Nexus, RetryPolicy

app = Nexus()
COUNTS = Path("counts")
COUNTS.mkdir(exist_ok=True)


def count(key: str) -> int:
    path = COUNTS / key
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


@app.workflow(retry=RetryPolicy(max_attempts=3, initial_delay=0.2, backoff=2.0, jitter=False))
def flaky(key: str, failures: int = 2) -> dict:
    n = count(key)
    if n <= failures:
        raise ConnectionError(f"down {n}")
    return {"attempt": n}


@app.workflow(retry=RetryPolicy(initial_delay=60.0, jitter=False))
def down(key: str) -> None:
    count(key)
    raise ConnectionError("down")


@app.workflow()
def quick() -> str:
    return "ok"
"""


class Cluster:
    """A serving instance and one arq ``worker`` process on one Redis."""

    def __init__(self, tmp_path: Path, redis_url: str, **settings: str) -> None:
        (tmp_path / "retryapp.py").write_text(APP)
        self.cwd = tmp_path
        self.env = {
            "NEXUS_REDIS_URL": redis_url,
            "NEXUS_REDIS_EXECUTE_ASYNC": "1",
            "NEXUS_RUN_TIMEOUT": "5",
            "NEXUS_REDIS_WORKER_GRACE": "0.5",
            "NEXUS_REDIS_POLL_DELAY": "0.05",
            **settings,
        }
        self.server = ServerProcess(["serve", "--app", "retryapp:app"], cwd=tmp_path, env=self.env)
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.server.__enter__()
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "nexus_aio", "worker", "--app", "retryapp:app"],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        self.server.stop()

    def submit(self, name: str, **inputs: Any) -> str:
        resp = requests.post(
            f"{self.server.url}/workflows/{name}/execute",
            json={"inputs": inputs, "mode": "async"},
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

    def events(self, execution_id: str) -> list[Any]:
        resp = requests.get(f"{self.server.url}/executions/{execution_id}/events", timeout=10)
        return parse_sse(resp.text)

    def attempts_made(self, key: str) -> int:
        path = self.cwd / "counts" / key
        return int(path.read_text()) if path.exists() else 0


@pytest.fixture
def cluster(tmp_path: Path, redis_server: Any) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(**settings: str) -> Cluster:
        c = Cluster(tmp_path, redis_server.url, **settings)
        made.append(c)
        c.start()
        return c

    yield make
    for c in made:
        c.stop()


def wait_until(predicate: Any, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_flaky_run_succeeds_on_its_third_arq_try_with_two_retry_events(cluster: Any) -> None:
    c = cluster()
    execution_id = c.submit("flaky", key="a")
    record = c.record(execution_id, wait=40)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 3 and record["result"] == {"attempt": 3}
    assert c.attempts_made("a") == 3
    events = c.events(execution_id)
    assert [kind for _, kind, _ in events] == ["start", "retry", "retry", "complete"]
    first, second = events[1][2], events[2][2]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert first["error"]["message"] == "down 1" and second["error"]["message"] == "down 2"
    assert first["error"]["details"]["exception"] == "ConnectionError"
    assert (first["delay"], second["delay"]) == (0.2, 0.4)


def test_arq_run_gives_up_after_max_attempts_keeping_the_last_error(cluster: Any) -> None:
    c = cluster()
    execution_id = c.submit("flaky", key="b", failures=10)
    record = c.record(execution_id, wait=40)
    assert record["status"] == "failed", record
    assert record["attempts"] == 3
    assert record["error"]["type"] == "WorkflowExecutionError"
    assert record["error"]["message"] == "down 3"
    assert c.attempts_made("b") == 3
    kinds = [kind for _, kind, _ in c.events(execution_id)]
    assert kinds == ["start", "retry", "retry", "error"]


def test_arq_backoff_holds_no_job_slot_and_can_be_cancelled(cluster: Any) -> None:
    c = cluster(NEXUS_REDIS_WORKER_JOBS="1")
    waiting = c.submit("down", key="c")

    def in_backoff() -> bool:
        record = c.record(waiting)
        return record["started_at"] is not None and record["status"] == "queued"

    wait_until(in_backoff)
    assert c.record(waiting)["attempts"] == 1
    # the worker's only job slot is free during the 60 s backoff
    other = c.submit("quick")
    assert c.record(other, wait=40)["status"] == "succeeded"
    resp = requests.delete(f"{c.server.url}/executions/{waiting}", timeout=10)
    assert resp.status_code == 200, resp.text
    wait_until(lambda: c.record(waiting)["status"] == "cancelled")
    assert c.attempts_made("c") == 1
