"""Fault tests: what a misbehaving workflow, store, client or signal does to a running server.

Each test injects one fault, checks the client sees a clear envelope (500, 503, 504) or a closed
connection, and then checks the server is still serving. Every wait is bounded by a timeout, and
none of them relies on a fixed sleep being long enough.

Covered elsewhere: SIGKILL during async runs (test_kill_recovery.py), a client leaving a stream
mid-way (test_streaming.py), the plain 500/504 envelopes (test_execute_http.py).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nexus_aio.errors import StoreUnavailable
from nexus_aio.testing import ServerProcess, make_app, start_server

SUM = {"inputs": {"a": 20, "b": 22}}


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def assert_serving(http: aiohttp.ClientSession, url: str) -> None:
    status, data = await post(http, f"{url}/workflows/sum/execute", SUM)
    assert (status, data["result"]) == (200, 42)


# -- workflows that misbehave --------------------------------------------------------------------
async def test_a_burst_of_raising_workflows_gives_500s_and_leaves_nothing_running(
    nexus_server, http
):
    app = make_app()
    url = await nexus_server(app)
    results = await asyncio.gather(
        *(
            post(http, f"{url}/workflows/fail/execute", {"inputs": {"message": f"boom {i}"}})
            for i in range(40)
        )
    )
    assert {status for status, _ in results} == {500}
    assert sorted(data["error"]["message"] for _, data in results) == sorted(
        f"boom {i}" for i in range(40)
    )
    assert all(data["error"]["type"] == "WorkflowExecutionError" for _, data in results)
    assert app.service is not None and app.service.running == 0
    await assert_serving(http, url)
    _, record = await get(http, f"{url}/executions/{results[0][1]['workflow_id']}")
    assert record["status"] == "failed"


async def test_hanging_workflows_time_out_with_504_and_their_tasks_are_cancelled(
    nexus_server, http
):
    app = make_app()
    entered = 0
    cancelled = 0

    @app.workflow(timeout=0.3)
    async def hang() -> None:
        nonlocal entered, cancelled
        entered += 1
        try:
            await asyncio.Event().wait()  # never set: only the timeout ends it
        except asyncio.CancelledError:
            cancelled += 1
            raise

    url = await nexus_server(app)
    hung = [
        asyncio.create_task(post(http, f"{url}/workflows/hang/execute", {"inputs": {}}))
        for _ in range(5)
    ]
    await assert_serving(http, url)  # while five executions hang
    async with asyncio.timeout(10):
        results = await asyncio.gather(*hung)
    assert [status for status, _ in results] == [504] * 5
    assert {data["error"]["type"] for _, data in results} == {"Timeout"}
    assert results[0][1]["error"]["details"] == {"timeout": 0.3}
    assert entered == cancelled == 5
    assert app.service is not None and app.service.running == 0
    await assert_serving(http, url)


async def test_a_thread_blocked_past_its_timeout_gives_504_while_others_are_served(
    nexus_server, http
):
    app = make_app()
    started = threading.Event()
    release = threading.Event()

    @app.workflow(timeout=0.3)
    def block() -> str:  # a sync workflow: it blocks a pool thread, which cannot be cancelled
        started.set()
        release.wait(30)
        return "released"

    url = await nexus_server(app)
    try:
        blocked = asyncio.create_task(post(http, f"{url}/workflows/block/execute", {"inputs": {}}))
        assert await asyncio.to_thread(started.wait, 10)
        for _ in range(5):
            await assert_serving(http, url)
        async with asyncio.timeout(10):
            status, data = await blocked
        assert not release.is_set()  # the 504 came while the thread was still blocked
        assert status == 504 and data["error"]["type"] == "Timeout"
        await assert_serving(http, url)
    finally:
        release.set()


# -- the SQLite store fails ----------------------------------------------------------------------
async def test_a_locked_sqlite_file_gives_503_store_unavailable_then_recovers(
    nexus_server, http, tmp_path
):
    db = tmp_path / "nexus.db"
    url = await nexus_server(make_app(database=str(db)))
    await assert_serving(http, url)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        status, data = await post(http, f"{url}/workflows/sum/execute", {**SUM, "mode": "async"})
        assert status == 503
        assert data["error"]["type"] == "StoreUnavailable"
        assert "not writable" in data["error"]["message"] and str(db) in data["error"]["message"]
        _, health = await get(http, f"{url}/health/detailed")
        assert health["status"] == "unhealthy"
        assert health["components"]["database"]["status"] == "unhealthy"
        assert (await get(http, f"{url}/health"))[0] == 200  # alive: no crash, no restart loop
        # Sync runs keep working: their records wait in memory for the lock to go.
        status, during = await post(http, f"{url}/workflows/sum/execute", SUM)
        assert (status, during["result"]) == (200, 42)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, accepted = await post(http, f"{url}/workflows/sum/execute", {**SUM, "mode": "async"})
    assert status == 202
    _, record = await get(http, f"{url}/executions/{accepted['workflow_id']}?wait=10")
    assert (record["status"], record["result"]) == ("succeeded", 42)
    _, health = await get(http, f"{url}/health/detailed")
    assert health["components"]["database"]["status"] == "healthy"
    with sqlite3.connect(db) as check:  # the async save was durable, and flushed the backlog
        ids = {row[0] for row in check.execute("SELECT id FROM executions")}
    assert {accepted["workflow_id"], during["workflow_id"]} <= ids


async def _create_database(path: Path) -> None:
    server = await start_server(make_app(database=str(path)))
    await server.stop()


async def test_a_read_only_sqlite_file_gives_503_for_writes_and_keeps_serving(
    nexus_server, http, tmp_path
):
    # chmod does not stop root; a read-only connection (SQLite's mode=ro) refuses writes for all.
    db = tmp_path / "nexus.db"
    await _create_database(db)
    url = await nexus_server(make_app(database=f"file:{db}?mode=ro"))
    status, data = await post(http, f"{url}/workflows/sum/execute", {**SUM, "mode": "async"})
    assert status == 503 and data["error"]["type"] == "StoreUnavailable"
    assert "readonly" in data["error"]["message"]
    async with http.post(
        f"{url}/workflows/counter/execute", json={"inputs": {}}, headers={"X-Session-ID": "ro-1"}
    ) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["type"] == "StoreUnavailable"
    _, health = await get(http, f"{url}/health/detailed")
    assert health["components"]["database"]["status"] == "unhealthy"
    await assert_serving(http, url)
    assert (await get(http, f"{url}/health"))[0] == 200


async def test_a_database_path_that_cannot_exist_fails_startup_with_store_unavailable(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the database directory should be")
    with pytest.raises(StoreUnavailable, match="cannot create directory"):
        await start_server(make_app(database=str(blocker / "nexus.db")))


# -- slow clients ----------------------------------------------------------------------------------
async def _trickle_headers(port: int, interval: float) -> float:
    """Open a connection, send a request head one byte per ``interval``; seconds until closed."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = loop.time()
    head = b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(10):
            try:
                rest = await reader.read()  # b"" once the server closes the connection
            except ConnectionResetError:  # closed with our unread bytes in its buffer: RST
                rest = b""
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    assert rest == b""  # closed without an answer: the request head never completed
    return loop.time() - opened


async def test_slow_header_clients_are_cut_off_at_header_timeout(nexus_server, http):
    app = make_app(header_timeout=0.5)
    url = await nexus_server(app)
    port = int(url.rsplit(":", 1)[1])
    slow_clients = [asyncio.create_task(_trickle_headers(port, 0.02)) for _ in range(5)]
    # Normal clients are unaffected, including a request that runs longer than the timeout.
    status, data = await post(http, f"{url}/workflows/slow/execute", {"inputs": {"seconds": 0.8}})
    assert (status, data["result"]) == (200, {"slept": 0.8})
    for _ in range(5):
        await assert_serving(http, url)
    closed_after = await asyncio.gather(*slow_clients)
    assert all(0.4 <= seconds < 3 for seconds in closed_after), closed_after


def test_header_timeout_defaults_to_ten_seconds_and_reads_the_environment(monkeypatch):
    assert make_app().settings.header_timeout == 10.0
    monkeypatch.setenv("NEXUS_HEADER_TIMEOUT", "2.5")
    assert make_app().settings.header_timeout == 2.5


# -- SIGTERM -----------------------------------------------------------------------------------
async def _wait_running(http: aiohttp.ClientSession, url: str, count: int) -> None:
    async with asyncio.timeout(10):
        while True:
            _, health = await get(http, f"{url}/health/detailed")
            if health["components"]["api"]["running_executions"] >= count:
                return
            await asyncio.sleep(0.02)


async def test_sigterm_lets_in_flight_requests_finish_then_exits_zero(http):
    env = {"NEXUS_SHUTDOWN_TIMEOUT": "8"}
    with ServerProcess(["serve"], env=env) as server:
        url = server.url
        in_flight = asyncio.create_task(
            post(http, f"{url}/workflows/slow/execute", {"inputs": {"seconds": 1.0}})
        )
        await _wait_running(http, url, 1)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            status, data = await in_flight
        assert (status, data["result"]) == (200, {"slept": 1.0})
        returncode = await asyncio.to_thread(server.proc.wait, 10)
        assert returncode == 0
        assert time.monotonic() - signalled < 8  # within the grace period
        output = server.stop()
    assert "Traceback" not in output
