"""SIGTERM: stop accepting, let in-flight requests finish within ``shutdown_timeout``, then end
open streams with an ``Interrupted`` error event, mark unfinished async runs ``interrupted`` and
exit within ``shutdown_timeout`` + 2 s (one process, and ``serve --workers 2``)."""

from __future__ import annotations

import signal
import socket
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from nexus_aio.testing import ServerProcess, parse_sse

SHUTDOWN_TIMEOUT = 2.0
EXIT_BOUND = SHUTDOWN_TIMEOUT + 2.0

APP = textwrap.dedent(
    """
    import asyncio
    import os
    import time
    from pathlib import Path

    from nexus_aio import Context, Nexus

    app = Nexus(load_entry_points=False)


    @app.workflow("nap")
    async def nap(seconds: float, ctx: Context, started: str = "") -> dict:
        if started:  # tells the test the run is in flight
            Path(started).touch()
        ctx.emit("napping", {"for": seconds})
        await asyncio.sleep(seconds)
        return {"slept": seconds}


    @app.workflow("pid")
    async def pid() -> int:
        return os.getpid()


    @app.workflow("block")
    def block(seconds: float, started: str) -> dict:  # a thread the server cannot stop
        Path(started).touch()
        time.sleep(seconds)
        return {"slept": seconds}
    """
)


def _server(tmp_path: Path, *extra: str) -> ServerProcess:
    (tmp_path / "napapp.py").write_text(APP)
    return ServerProcess(
        ["serve", "--app", "napapp:app", *extra],
        cwd=tmp_path,
        env={
            "NEXUS_DATABASE": str(tmp_path / "nexus.db"),
            "NEXUS_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
            "NEXUS_RUN_TIMEOUT": "600",
            "NEXUS_REQUEST_TIMEOUT": "600",
        },
    )


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:  # reported by the test's assertions
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _open_stream(url: str, seconds: float) -> tuple[socket.socket, bytes]:
    """A raw stream request, read until its first workflow event (the run is going)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    body = b'{"inputs": {"seconds": %d}, "mode": "stream"}' % seconds
    sock.sendall(
        b"POST /workflows/nap/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    seen = b""
    while b"napping" not in seen:
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    return sock, seen


def _read_to_end(sock: socket.socket, seen: bytes) -> bytes:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return seen
        seen += chunk


def _wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.02)


def _wait_running(client: httpx.Client, execution_id: str) -> None:
    def running() -> bool:
        resp = client.get(f"/executions/{execution_id}", headers={"Connection": "close"})
        return resp.status_code == 200 and resp.json()["status"] == "running"

    _wait_for(running)


def _sse_events(raw: bytes) -> list[Any]:
    text = raw.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    if "transfer-encoding: chunked" in raw.split(b"\r\n\r\n", 1)[0].decode().lower():
        text = _dechunk(raw.split(b"\r\n\r\n", 1)[1]).decode()
    return parse_sse(text)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def test_sigterm_finishes_inflight_requests_interrupts_the_rest_and_exits_in_time(tmp_path):
    """A sync request that fits in ``shutdown_timeout`` completes; a longer stream ends with an
    ``Interrupted`` error event, a longer sync request gets that error (even one stuck in a
    thread), a longer async run reads ``interrupted`` after a restart; exit within the bound."""
    with _server(tmp_path) as server:
        client = httpx.Client(base_url=server.url, timeout=30)
        # An async run far longer than the shutdown window.
        long_async = client.post(
            "/workflows/nap/execute", json={"inputs": {"seconds": 120}, "mode": "async"}
        )
        assert long_async.status_code == 202, long_async.text
        async_id = long_async.json()["workflow_id"]
        _wait_running(client, async_id)
        # A stream far longer than the window, and a sync request that fits in it.
        stream, seen = _open_stream(server.url, 120)
        marker = tmp_path / "sync-started"
        sync_thread, sync_out = _in_thread(
            lambda: httpx.post(
                f"{server.url}/workflows/nap/execute",
                json={"inputs": {"seconds": 1, "started": str(marker)}},
                timeout=30,
            )
        )
        _wait_for(marker.exists)
        blocked = tmp_path / "block-started"
        block_thread, block_out = _in_thread(
            lambda: httpx.post(
                f"{server.url}/workflows/block/execute",
                json={"inputs": {"seconds": 60, "started": str(blocked)}},
                timeout=30,
            )
        )
        _wait_for(blocked.exists)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        raw = _read_to_end(stream, seen)
        server.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
        stream.close()
        sync_thread.join(10)
        block_thread.join(10)
        out = server.stop()

    assert server.proc.returncode == 0, out
    assert elapsed < EXIT_BOUND, f"exited after {elapsed:.1f} s"
    sync_resp = sync_out.get("value")
    assert sync_resp is not None, sync_out
    assert sync_resp.status_code == 200 and sync_resp.json()["result"] == {"slept": 1}
    # A sync request still running at the deadline is answered with the Interrupted error.
    block_resp = block_out.get("value")
    assert block_resp is not None, block_out
    assert block_resp.status_code == 500
    assert block_resp.json()["error"]["type"] == "Interrupted"
    _, last_event, last_data = _sse_events(raw)[-1]
    assert last_event == "error", raw
    assert last_data["error"]["type"] == "Interrupted", last_data

    # Restarted on the same SQLite file: the unfinished async run reads interrupted.
    with _server(tmp_path) as again:
        record = httpx.get(f"{again.url}/executions/{async_id}", timeout=10).json()
    assert record["status"] == "interrupted", record
    assert record["error"]["type"] == "Interrupted"


def test_sigterm_with_two_workers_forwards_and_every_process_exits_in_time(tmp_path):
    with _server(tmp_path, "--workers", "2") as server:
        client = httpx.Client(base_url=server.url, timeout=30)
        pids: set[int] = set()

        def both_serve() -> bool:  # the port answers once the first worker listens
            resp = client.post(
                "/workflows/pid/execute", json={"inputs": {}}, headers={"Connection": "close"}
            )
            pids.add(resp.json()["result"])
            return len(pids) == 2

        _wait_for(both_serve, 30)
        ids = []
        for _ in range(4):  # new connections: both workers get some, most likely
            resp = client.post(
                "/workflows/nap/execute",
                json={"inputs": {"seconds": 120}, "mode": "async"},
                headers={"Connection": "close"},
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["workflow_id"])
        for execution_id in ids:
            _wait_running(client, execution_id)
        client.close()
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
        out = server.stop()
    assert server.proc.returncode == 0, out
    assert elapsed < EXIT_BOUND, f"exited after {elapsed:.1f} s"
    with _server(tmp_path) as again:
        statuses = {
            httpx.get(f"{again.url}/executions/{i}", timeout=10).json()["status"] for i in ids
        }
    assert statuses == {"interrupted"}
