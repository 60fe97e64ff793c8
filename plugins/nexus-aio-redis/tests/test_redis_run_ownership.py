"""Runs of one instance, seen from another on the same Redis (real server processes):
cancelling through Redis, leases of dead owners, and a finished record never going back."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nexus_aio_redis import RedisExecutionStore
from nexus_aio_redis.client import connect

from nexus_aio.stores.executions import ExecutionEvent, ExecutionRecord
from nexus_aio.testing import ServerProcess, parse_sse

APP = """
import asyncio
from nexus_aio import Context, Nexus

app = Nexus()


@app.workflow()
async def nap(ctx: Context, seconds: float = 1.0) -> dict:
    ctx.emit("napping", {"for": seconds})
    await asyncio.sleep(seconds)
    return {"slept": seconds}
"""


class Instances:
    """Serving instances (in-process runs, no arq) on one Redis."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        (tmp_path / "napapp.py").write_text(APP)
        self.cwd = tmp_path
        self.redis_url = redis_url
        self.started: list[ServerProcess] = []

    def start(self, **settings: str) -> ServerProcess:
        env = {
            "NEXUS_REDIS_URL": self.redis_url,
            "NEXUS_RUN_TIMEOUT": "120",
            "NEXUS_REQUEST_TIMEOUT": "120",
            **settings,
        }
        server = ServerProcess(["serve", "--app", "napapp:app"], cwd=self.cwd, env=env)
        self.started.append(server)
        return server.__enter__()


@pytest.fixture
def instances(tmp_path: Path, redis_server: Any) -> Iterator[Instances]:
    made = Instances(tmp_path, redis_server.url)
    yield made
    for server in made.started:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop(timeout=10)


def _submit(server: ServerProcess, seconds: float) -> str:
    resp = httpx.post(
        f"{server.url}/workflows/nap/execute",
        json={"inputs": {"seconds": seconds}, "mode": "async"},
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["workflow_id"])


def _record(server: ServerProcess, execution_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{server.url}/executions/{execution_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _wait_status(
    server: ServerProcess, execution_id: str, status: str, timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record = _record(server, execution_id)
    while record["status"] != status:
        assert time.monotonic() < deadline, f"{execution_id} never reached {status}: {record}"
        time.sleep(0.05)
        record = _record(server, execution_id)
    return record


def test_delete_on_b_cancels_an_async_run_on_a_and_answers_cancelled(instances: Any) -> None:
    a, b = instances.start(), instances.start()
    execution_id = _submit(a, 60)
    _wait_status(b, execution_id, "running")
    started = time.monotonic()
    resp = httpx.delete(f"{b.url}/executions/{execution_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"  # the owner acknowledged before the answer
    assert time.monotonic() - started < 3
    record = _record(a, execution_id)
    assert record["status"] == "cancelled" and record["error"]["type"] == "Cancelled"
    again = httpx.delete(f"{b.url}/executions/{execution_id}", timeout=10)
    assert again.status_code == 409


def test_delete_on_b_ends_a_stream_on_a_with_a_cancelled_error_event(instances: Any) -> None:
    a, b = instances.start(), instances.start()
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{a.url}/workflows/nap/execute",
            json={"inputs": {"seconds": 60}, "mode": "stream"},
        ) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        seen: list[str] = []
        for line in lines:  # until the workflow's first event is complete: the run is going
            seen.append(line)
            if not line and "event: napping" in seen:
                break
        execution_id = parse_sse("\n".join(seen))[0][2]["workflow_id"]
        resp = httpx.delete(f"{b.url}/executions/{execution_id}", timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "cancelled"
        seen.extend(lines)
    _, kind, data = parse_sse("\n".join(seen))[-1]
    assert kind == "error" and data["error"]["type"] == "Cancelled"


def test_delete_answers_the_running_status_when_the_owner_does_not_acknowledge_in_time(
    instances: Any,
) -> None:
    a = instances.start()
    b = instances.start(NEXUS_REDIS_CANCEL_WAIT="0.5")
    execution_id = _submit(a, 60)
    _wait_status(b, execution_id, "running")
    a.proc.send_signal(signal.SIGSTOP)  # alive (its lease holds) but not answering
    try:
        resp = httpx.delete(f"{b.url}/executions/{execution_id}", timeout=10)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "running"  # true when answered; the request stays placed
    record = _wait_status(b, execution_id, "cancelled")  # the owner acts once it can
    assert record["error"]["type"] == "Cancelled"


def test_runs_of_a_sigkilled_instance_become_interrupted_once_their_lease_expires(
    instances: Any,
) -> None:
    a = instances.start(NEXUS_REDIS_RUN_LEASE="1")
    b = instances.start(NEXUS_REDIS_RUN_LEASE="1")
    running = _submit(a, 60)
    _wait_status(b, running, "running")
    mine = _submit(b, 3)  # b's own run keeps its lease and finishes
    a.stop(signal.SIGKILL)
    started = time.monotonic()
    record = _wait_status(b, running, "interrupted", timeout=10)
    assert time.monotonic() - started < 5  # lease (1 s) + sweep interval (0.5 s) + slack
    assert record["error"]["type"] == "Interrupted"
    events = httpx.get(f"{b.url}/executions/{running}/events", timeout=10).text
    _, kind, data = parse_sse(events)[-1]
    assert kind == "error" and data["error"]["type"] == "Interrupted"
    assert _wait_status(b, mine, "succeeded")["result"] == {"slept": 3}
    gone = httpx.delete(f"{b.url}/executions/{running}", timeout=10)
    assert gone.status_code == 409


def test_finished_async_runs_never_read_running_again_across_instances(instances: Any) -> None:
    a, b = instances.start(), instances.start()
    ids = [_submit(a, 0) for _ in range(30)]
    for execution_id in ids:
        _wait_status(b, execution_id, "succeeded")
    a.stop()  # every write a has queued is flushed by now
    assert {_record(b, execution_id)["status"] for execution_id in ids} == {"succeeded"}


async def test_a_late_running_write_never_replaces_a_finished_record(redis_server: Any) -> None:
    store = RedisExecutionStore(connect(redis_server.url, timeout=1.0))
    try:
        record = ExecutionRecord("e1", "nap", "async", "running", {}, 1000.0, started_at=1000.0)
        store.publish(record, ExecutionEvent(1, "start", {}, 1000.0))  # written behind
        done = record.copy()
        done.status, done.finished_at, done.result = "succeeded", 1001.0, {"ok": True}
        await store.save(done)
        await store.flush_published()
        await store.save(record)  # a start event's record, late
        got = await store.get("e1")
        assert got is not None and got.status == "succeeded" and got.result == {"ok": True}
        cancelled = record.copy()
        cancelled.status = "cancelled"
        await store.save(cancelled)  # another final status: the first one stays
        got = await store.get("e1")
        assert got is not None and got.status == "succeeded"
    finally:
        await store.close()


def test_sigterm_ends_streams_of_runs_elsewhere_with_interrupted_within_the_bound(
    instances: Any,
) -> None:
    """A server stopping ends the streams it relays of runs it does not own (they go on) within
    ``shutdown_timeout`` + 2 s, with an ``Interrupted`` error event."""
    a = instances.start()
    b = instances.start(NEXUS_SHUTDOWN_TIMEOUT="1")
    execution_id = _submit(a, 60)
    _wait_status(b, execution_id, "running")
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{b.url}/executions/{execution_id}/events") as stream,
    ):
        lines = stream.iter_lines()
        seen: list[str] = []
        for line in lines:  # the run's first events: the stream is open
            seen.append(line)
            if not line and "event: napping" in seen:
                break
        started = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        seen.extend(lines)
        b.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
    assert b.proc.returncode == 0
    assert elapsed < 1 + 2, f"exited after {elapsed:.1f} s"
    _, kind, data = parse_sse("\n".join(seen))[-1]
    assert kind == "error" and data["error"]["type"] == "Interrupted", seen[-6:]
    assert _record(a, execution_id)["status"] == "running"  # its owner goes on
