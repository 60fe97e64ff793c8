"""Workflows cannot take the server down (issue 11, "Why" and item 6).

- Any exception a workflow raises, ``SystemExit``, ``KeyboardInterrupt`` and other
  ``BaseException`` subclasses included, is a ``WorkflowExecutionError`` in every mode, and the
  process keeps serving. These run against a real ``python -m nexus_aio serve`` subprocess, so
  an exit of the process is observable.
- Workflow timeouts keep working when the app is used from a second event loop.
- An error after an SSE response has started is an ``event: error``, never a second HTTP status
  line in the open body (read with a raw socket: a client library would hide the bytes).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus_aio import Nexus, Timeout
from nexus_aio.testing import ServerProcess, make_app, parse_sse


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    return make_app(**settings)


# -- SystemExit, KeyboardInterrupt and other BaseExceptions --------------------------------------
RAISING_APP = '''
import asyncio

from nexus_aio import Nexus

app = Nexus()


class Escape(BaseException):
    """Not an Exception: what a library's own control-flow exception may look like."""


RAISES = {
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "BaseException": lambda: Escape("escaped"),
}


@app.workflow("raise-async")
async def raise_async(kind: str) -> None:
    await asyncio.sleep(0)
    raise RAISES[kind]()


@app.workflow("raise-sync")
def raise_sync(kind: str) -> None:  # runs in a pool thread
    raise RAISES[kind]()


@app.workflow("raise-generator")
async def raise_generator(kind: str):
    yield "before"
    raise RAISES[kind]()
'''

RAISING_WORKFLOWS = ["raise-async", "raise-sync", "raise-generator"]
BASE_EXCEPTIONS = ["SystemExit", "KeyboardInterrupt", "BaseException"]


@pytest.fixture
def raising_server(tmp_path: Path) -> Iterator[ServerProcess]:
    (tmp_path / "raising.py").write_text(RAISING_APP)
    with ServerProcess(["serve", "--app", "raising:app"], cwd=tmp_path) as server:
        yield server


def assert_still_serving(server: ServerProcess, client: httpx.Client, after: str) -> None:
    assert server.proc.poll() is None, (
        f"the server exited ({server.proc.returncode}) after {after}:\n{server.read_output()}"
    )
    assert client.get("/health").status_code == 200, after


def run_raising(client: httpx.Client, mode: str, workflow: str, kind: str) -> None:
    """One execution of a raising workflow in ``mode``, checked from the client's side."""
    body = {"inputs": {"kind": kind}, "mode": mode}
    if mode == "sync":
        response = client.post(f"/workflows/{workflow}/execute", json=body)
        assert response.status_code == 500, response.text
        envelope = response.json()
        assert envelope["success"] is False
        assert envelope["error"]["type"] == "WorkflowExecutionError"
        assert "Traceback" not in response.text
    elif mode == "stream":
        with client.stream("POST", f"/workflows/{workflow}/execute", json=body) as response:
            assert response.status_code == 200
            events = parse_sse(response.read().decode())
        kinds = [kind for _, kind, _ in events]
        assert kinds[0] == "start" and kinds[-1] == "error", kinds
        assert events[-1][2]["error"]["type"] == "WorkflowExecutionError"
        assert "Traceback" not in json.dumps(events[-1][2])
    else:
        response = client.post(f"/workflows/{workflow}/execute", json=body)
        assert response.status_code == 202, response.text
        execution_id = response.json()["workflow_id"]
        record = client.get(f"/executions/{execution_id}", params={"wait": 10}).json()
        assert record["status"] == "failed", record
        assert record["error"]["type"] == "WorkflowExecutionError"


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS)
@pytest.mark.parametrize("mode", ["sync", "stream", "async"])
def test_a_workflow_raising_a_base_exception_is_a_workflow_error_and_the_server_keeps_serving(
    raising_server, mode, kind
):
    with httpx.Client(base_url=raising_server.url, timeout=15) as client:
        for workflow in RAISING_WORKFLOWS:
            where = f"{workflow} raised {kind} in {mode} mode"
            try:
                run_raising(client, mode, workflow, kind)
            except httpx.TransportError as exc:
                pytest.fail(f"{where}: {exc!r}\n{raising_server.read_output()}")
            assert_still_serving(raising_server, client, where)


# -- a second event loop ---------------------------------------------------------------------------
def test_workflow_timeouts_hold_on_every_event_loop_the_app_is_used_from():
    app = app_()

    @app.workflow("sleepy", timeout=0.2)
    async def sleepy() -> str:
        await asyncio.sleep(5)
        return "woke"

    @app.workflow("add")
    async def add(a: int, b: int) -> int:
        return a + b

    async def timed_out(loop_number: int) -> Timeout:
        try:
            async with asyncio.timeout(3):
                await app.execute_workflow("sleepy", {})
        except Timeout as exc:
            return exc
        except TimeoutError:
            pytest.fail(f"event loop #{loop_number}: no Timeout within 3 s (timeout=0.2)")
        pytest.fail(f"event loop #{loop_number}: the workflow finished despite its timeout")

    try:
        for loop_number in (1, 2):
            error = asyncio.run(timed_out(loop_number))
            assert error.status == 504 and error.type == "Timeout"
        assert asyncio.run(app.execute_workflow("add", {"a": 2, "b": 3})) == 5
    finally:
        asyncio.run(app.aclose())


# -- an error after the SSE response has started ---------------------------------------------------
async def raw_post(port: int, path: str, body: dict[str, Any]) -> bytes:
    """POST over a raw socket with ``Connection: close``; every byte up to EOF."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + payload)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def dechunk(body: bytes) -> bytes:
    """Decode a chunked body that must end with the last chunk and nothing after it."""
    out = bytearray()
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            assert body[pos:] == b"\r\n", f"bytes after the last chunk: {body[pos:]!r}"
            return bytes(out)
        out += body[pos : pos + size]
        assert body[pos + size : pos + size + 2] == b"\r\n", "a chunk overran its size"
        pos += size + 2


def late_failures(app: Nexus) -> None:
    @app.workflow("def-generator-raises")
    def def_generator_raises() -> Iterator[int]:
        yield 0
        yield 1
        raise ValueError("boom")

    @app.workflow("async-generator-raises")
    async def async_generator_raises() -> AsyncIterator[int]:
        yield 0
        yield 1
        raise ValueError("boom")

    @app.workflow("unserializable-chunk")
    async def unserializable_chunk() -> AsyncIterator[Any]:
        yield 0
        yield object()


@pytest.mark.parametrize(
    "workflow", ["def-generator-raises", "async-generator-raises", "unserializable-chunk"]
)
async def test_an_error_after_the_stream_started_is_an_error_event_not_a_second_status_line(
    nexus_server, workflow
):
    app = app_()
    late_failures(app)
    url = await nexus_server(app)
    port = int(url.rsplit(":", 1)[1])
    raw = await raw_post(port, f"/workflows/{workflow}/execute", {"inputs": {}, "mode": "stream"})
    status_lines = re.findall(rb"(?m)^HTTP/1\.[01] \d{3}[^\r\n]*", raw)
    assert status_lines == [b"HTTP/1.1 200 OK"], raw.decode(errors="replace")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: text/event-stream" in head.lower()
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)  # the connection ends cleanly: the last chunk, then EOF
    events = parse_sse(body.decode())
    kinds = [kind for _, kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "error" and kinds.count("error") == 1, kinds
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][2]["error"]["type"] == "WorkflowExecutionError"
    assert events[-1][2]["workflow_id"] == events[0][2]["workflow_id"]
    if workflow.endswith("raises"):
        assert [data for _, kind, data in events if kind == "chunk"] == [0, 1]
        assert events[-1][2]["error"]["message"] == "boom"
    # The server is unharmed: the next request on a new connection is answered.
    again = await raw_post(port, "/workflows/sum/execute", {"inputs": {"a": 1, "b": 2}})
    assert again.startswith(b"HTTP/1.1 200 OK")
