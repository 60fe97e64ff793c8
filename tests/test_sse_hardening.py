"""SSE hardening (issue 12) over real sockets: bad ``Last-Event-ID`` values, one status line per
response, clients that stop reading, resuming an execute stream, ``session_id`` on ``complete``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import pytest

from nexus_aio import Nexus, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.settings import Settings
from nexus_aio.stores.executions import ExecutionEvent, ExecutionRecord
from nexus_aio.testing import ServerProcess, event_ids, make_app, parse_sse, read_sse


def app_(**settings: Any) -> Nexus:
    settings.setdefault("load_entry_points", False)
    return make_app(**settings)


def raw_request(url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` as is on a new connection; everything the server sends until it
    closes (the request asks for ``Connection: close``)."""
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def get(path: str, headers: dict[str, bytes] | None = None) -> bytes:
    lines = [b"GET " + path.encode() + b" HTTP/1.1", b"Host: test", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def status_lines(response: bytes) -> list[bytes]:
    return [line for line in response.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def body_json(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


BAD_IDS = ["1_0", "١٢", "+1", " 1", "1 ", "-1", "1.0", "0x1", "x", "9223372036854775808", "1e3"]


async def finished_execution(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}}) as r:
        return str((await r.json())["workflow_id"])


# -- Last-Event-ID -------------------------------------------------------------------------------
async def test_last_event_id_that_is_not_a_small_ascii_integer_is_a_400_before_any_stream_opens(
    nexus_server, http
):
    url = await nexus_server(app_())
    execution_id = await finished_execution(http, url)
    events = f"/executions/{execution_id}/events"
    for bad in BAD_IDS:
        request = get(f"{events}?last_event_id={quote(bad)}")
        response = await asyncio.to_thread(raw_request, url, request)
        assert status_lines(response) == [b"HTTP/1.1 400 Bad Request"], (bad, response)
        envelope = body_json(response)
        assert envelope["success"] is False and envelope["error"]["type"] == "ValidationError"
        assert envelope["error"]["details"]["field"] == "Last-Event-ID"
        assert b"text/event-stream" not in response
        if bad != bad.strip():
            continue  # HTTP strips the spaces around a header value: " 1" arrives as "1"
        # The header, as a reconnecting EventSource sends it, on both kinds of stream.
        for path in (events, "/workflows/sum/execute?mode=stream&a=1&b=2"):
            request = get(path, {"Last-Event-ID": bad.encode()})
            response = await asyncio.to_thread(raw_request, url, request)
            assert status_lines(response) == [b"HTTP/1.1 400 Bad Request"], (bad, path, response)
            assert body_json(response)["error"]["type"] == "ValidationError"
            assert b"text/event-stream" not in response
    async with http.get(f"{url}/executions?workflow=sum") as r:
        assert len((await r.json())["executions"]) == 1  # no bad id started a run


async def test_last_event_id_accepts_ascii_integers_up_to_2_63_minus_1(nexus_server, http):
    url = await nexus_server(app_())
    execution_id = await finished_execution(http, url)
    for good, expected in (("0", 2), ("007", 0), ("1", 1), (str(2**63 - 1), 0)):
        response = await asyncio.to_thread(
            raw_request, url, get(f"/executions/{execution_id}/events?last_event_id={good}")
        )
        assert status_lines(response) == [b"HTTP/1.1 200 OK"], (good, response)
        assert response.count(b"\nevent: ") == expected, (good, response)


async def test_events_endpoint_takes_an_execute_stream_id_of_the_same_execution_only(
    nexus_server, http
):
    url = await nexus_server(app_())
    first = await finished_execution(http, url)
    other = await finished_execution(http, url)
    headers = {"Last-Event-ID": f"{first}:1"}
    async with http.get(f"{url}/executions/{first}/events", headers=headers) as r:
        assert r.status == 200
        assert [kind for _, kind, _ in await read_sse(r)] == ["complete"]
    headers = {"Last-Event-ID": f"{other}:1"}
    async with http.get(f"{url}/executions/{first}/events", headers=headers) as r:
        assert r.status == 400 and (await r.json())["error"]["type"] == "ValidationError"


async def test_a_failure_after_the_stream_opened_never_writes_a_second_status_line(
    nexus_server, http
):
    app = app_()

    @app.workflow("unsendable")
    async def unsendable() -> AsyncIterator[Any]:
        yield "fine"
        yield object()  # cannot be encoded as JSON: the stream has already started

    url = await nexus_server(app)
    response = await asyncio.to_thread(
        raw_request, url, get("/workflows/unsendable/execute?mode=stream")
    )
    assert status_lines(response) == [b"HTTP/1.1 200 OK"], response
    text = response.decode()
    assert "event: chunk" in text and text.count("event: error") == 1
    assert '"WorkflowExecutionError"' in text


# -- aiohttp-sse responses -----------------------------------------------------------------------
async def test_stream_is_an_event_source_response_that_sends_retry_once_at_its_start(
    nexus_server, http
):
    app = app_(stream_resume_grace=1.5)

    @app.workflow("three")
    async def three() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/three/execute", json={"mode": "stream"}, headers={"X-Test": "1"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        raw = (await resp.read()).decode()
    assert "\r" not in raw and ": ping" not in raw  # sep="\n", keepalives are our own events
    blocks = raw.split("\n\n")
    assert blocks[-1] == "" and len(blocks) == 6
    assert raw.count("retry: ") == 1 and blocks[0].endswith("\nretry: 750")  # half the grace
    workflow_id = json.loads(blocks[0].splitlines()[2][6:])["workflow_id"]
    assert event_ids(raw) == [f"{workflow_id}:{n}" for n in range(1, 6)]
    kinds = ["start", "chunk", "chunk", "chunk", "complete"]
    for n, (block, kind) in enumerate(zip(blocks[:-1], kinds, strict=True), start=1):
        lines = block.split("\n")
        assert lines[:2] == [f"id: {workflow_id}:{n}", f"event: {kind}"], block
        assert lines[2].startswith("data: ") and len(lines) == (4 if n == 1 else 3), block


# -- clients that stop reading -------------------------------------------------------------------
SPEW_APP = textwrap.dedent(
    """
    import asyncio
    from nexus_aio import Nexus

    app = Nexus(load_entry_points=False)

    @app.workflow("spew")
    async def spew():
        block = "x" * 16384
        while True:  # endless: only a cancellation ends it
            await asyncio.sleep(0.005)
            yield block
    """
)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_stops_reading_is_dropped_after_sse_send_timeout_and_its_run_cancelled(
    tmp_path,
):
    (tmp_path / "spewapp.py").write_text(SPEW_APP)
    env = {
        "NEXUS_SSE_SEND_TIMEOUT": "1",
        "NEXUS_STREAM_RESUME_GRACE": "0.2",
        "NEXUS_REQUEST_TIMEOUT": "600",  # the send timeout, not the run's deadline, ends it
    }
    with ServerProcess(["serve", "--app", "spewapp:app"], cwd=tmp_path, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/health").status_code == 200
            baseline = rss_kb(server.proc.pid)
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", server.port))
            stalled.sendall(get("/workflows/spew/execute?mode=stream"))  # and never reads
            opened = time.monotonic()
            deadline = opened + 20
            record: dict[str, Any] = {}
            peak = baseline
            while time.monotonic() < deadline:
                peak = max(peak, rss_kb(server.proc.pid))
                runs = client.get("/executions", params={"workflow": "spew"}).json()
                record = runs["executions"][0] if runs["executions"] else {}
                if record.get("status") == "cancelled":
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - opened
            assert record.get("status") == "cancelled", record
            assert 1.0 <= elapsed < 10, elapsed  # sse_send_timeout + grace, not request_timeout
            # The server aborted the connection: what was buffered, then the end.
            stalled.settimeout(10)
            received = 0
            try:
                while data := stalled.recv(65536):
                    received += len(data)
            except ConnectionResetError:
                pass
            stalled.close()
            assert received < 16 * 1024 * 1024  # kernel buffers, not a growing backlog
            after = rss_kb(server.proc.pid)
            assert peak - baseline < 100 * 1024, (baseline, peak)
            assert client.get("/health").status_code == 200
            output = server.read_output()
    assert after - baseline < 100 * 1024, (baseline, after)
    assert "Traceback" not in output and "ERROR" not in output, output


# -- resuming an execute stream ------------------------------------------------------------------
def gated_app(**settings: Any) -> tuple[Nexus, asyncio.Event]:
    gate = asyncio.Event()
    app = app_(**settings)

    @app.workflow("ticks")
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            if i == 2:
                await gate.wait()
            yield i

    return app, gate


async def wait_status(
    http: aiohttp.ClientSession, url: str, execution_id: str, status: str, headers: Any = None
) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{url}/executions/{execution_id}", headers=headers) as r:
                record = await r.json()
            if record["status"] == status:
                return dict(record)
            await asyncio.sleep(0.02)


async def test_execute_stream_reconnecting_with_last_event_id_resumes_the_same_execution(
    nexus_server, http
):
    app, gate = gated_app()
    url = await nexus_server(app)
    stream_url = f"{url}/workflows/ticks/execute?mode=stream&n=5"
    resp = await http.get(stream_url)
    first = await read_sse(resp, limit=3)  # start, chunk 0, chunk 1
    resp.close()  # the connection drops; the run waits at its gate
    execution_id = first[0][2]["workflow_id"]
    await asyncio.sleep(0)
    headers = {"Last-Event-ID": f"{execution_id}:{first[-1][0]}"}
    async with http.get(stream_url, headers=headers) as again:
        assert again.status == 200
        gate.set()
        raw = (await again.read()).decode()
    rest = parse_sse(raw)
    seqs = [seq for seq, _, _ in first + rest]
    assert seqs == list(range(1, 8))  # no duplicate, no gap
    assert [d for _, k, d in first + rest if k == "chunk"] == [0, 1, 2, 3, 4]
    assert rest[-1][2]["workflow_id"] == execution_id and rest[-1][2]["result"] == [0, 1, 2, 3, 4]
    assert event_ids(raw)[0] == f"{execution_id}:4" and raw.count("retry: ") == 1
    async with http.get(f"{url}/executions?workflow=ticks") as r:
        runs = (await r.json())["executions"]
    assert [(r["id"], r["status"]) for r in runs] == [(execution_id, "succeeded")]
    # Reconnecting after the closing event: 204 No Content, which stops an EventSource.
    last = {"Last-Event-ID": f"{execution_id}:{seqs[-1]}"}
    async with http.get(stream_url, headers=last) as done:
        assert done.status == 204 and await done.read() == b""


async def test_a_dropped_stream_nobody_resumes_is_cancelled_after_stream_resume_grace(
    nexus_server, http
):
    app, _ = gated_app(stream_resume_grace=0.6)
    url = await nexus_server(app)
    resp = await http.get(f"{url}/workflows/ticks/execute?mode=stream&n=5")
    first = await read_sse(resp, limit=3)
    execution_id = first[0][2]["workflow_id"]
    resp.close()
    dropped = time.monotonic()
    record = await wait_status(http, url, execution_id, "cancelled")
    assert time.monotonic() - dropped >= 0.6  # it waited the grace for a resume first
    assert record["error"]["type"] == "Cancelled"
    # A reconnect after that replays the end it missed: the cancellation.
    headers = {"Last-Event-ID": f"{execution_id}:{first[-1][0]}"}
    async with http.get(f"{url}/workflows/ticks/execute?mode=stream&n=5", headers=headers) as r:
        rest = await read_sse(r)
    assert [k for _, k, _ in rest] == ["error"] and rest[0][2]["error"]["type"] == "Cancelled"


async def test_resuming_a_stream_is_only_for_the_actor_that_started_it(nexus_server, http):
    class HeaderActor:
        __name__ = "header_actor"

        @hookimpl
        def actor_from_request(self, nexus: Any, request: Any) -> Any:
            name = request.headers.get("X-Test-Actor")
            return {"id": name} if name else None

    app, gate = gated_app(plugins=[HeaderActor()])
    url = await nexus_server(app)
    stream_url = f"{url}/workflows/ticks/execute?mode=stream&n=3"
    alice = {"X-Test-Actor": "alice"}
    resp = await http.get(stream_url, headers=alice)
    first = await read_sse(resp, limit=2)
    resp.close()
    execution_id = first[0][2]["workflow_id"]
    resume = {"Last-Event-ID": f"{execution_id}:2"}
    async with http.get(stream_url, headers={**resume, "X-Test-Actor": "bob"}) as r:
        assert r.status == 403 and (await r.json())["error"]["type"] == "Forbidden"
    async with http.get(stream_url, headers=resume) as r:
        assert r.status == 401 and (await r.json())["error"]["type"] == "Unauthorized"
    async with http.get(
        f"{url}/workflows/sum/execute?mode=stream&a=1&b=1", headers={**resume, **alice}
    ) as r:
        assert r.status == 404  # an execution of another workflow
    async with http.get(stream_url, headers={**resume, **alice}) as r:
        assert r.status == 200
        gate.set()
        rest = await read_sse(r)
    assert [(seq, k) for seq, k, _ in rest] == [(3, "chunk"), (4, "chunk"), (5, "complete")]
    assert rest[-1][2]["workflow_id"] == execution_id


async def test_resuming_an_unknown_execution_is_a_404(nexus_server, http):
    url = await nexus_server(app_())
    headers = {"Last-Event-ID": "wf-000000000000000000000000:3"}
    async with http.get(f"{url}/workflows/sum/execute?mode=stream&a=1&b=1", headers=headers) as r:
        assert r.status == 404 and (await r.json())["error"]["type"] == "ExecutionNotFound"


async def test_a_stream_resumed_on_a_process_that_does_not_run_it_follows_the_store(
    nexus_server, http
):
    app = app_()
    url = await nexus_server(app)
    store = app.service.executions
    execution_id = "wf-0123456789abcdef01234567"  # running in another worker process
    record = ExecutionRecord(execution_id, "sum", "stream", "running", {}, time.time())
    await store.save(record)
    start = {"workflow_id": execution_id}
    await store.add_events(execution_id, [ExecutionEvent(1, "start", start, time.time())])
    await store.add_events(execution_id, [ExecutionEvent(2, "chunk", "a", time.time())])
    headers = {"Last-Event-ID": f"{execution_id}:1"}
    resp = await http.get(f"{url}/workflows/sum/execute?mode=stream&a=1&b=2", headers=headers)
    assert resp.status == 200
    first = await read_sse(resp, limit=1)
    record.status, record.result, record.finished_at = "succeeded", 3, time.time()
    await store.add_events(execution_id, [ExecutionEvent(3, "chunk", "b", time.time())])
    await store.save(record)
    async with asyncio.timeout(5):
        rest = await read_sse(resp)
    resp.close()
    assert [(n, k) for n, k, _ in first + rest] == [(2, "chunk"), (3, "chunk"), (4, "complete")]
    assert rest[-1][2]["result"] == 3


# -- session_id ----------------------------------------------------------------------------------
async def test_stream_complete_envelope_carries_the_session_id_of_the_request(nexus_server, http):
    url = await nexus_server(app_())
    async with http.post(
        f"{url}/workflows/sum/execute",
        json={"inputs": {"a": 1, "b": 2}, "mode": "stream", "session_id": "sess-1"},
    ) as resp:
        assert resp.headers["X-Session-ID"] == "sess-1"
        events = await read_sse(resp)
    assert events[-1][1] == "complete" and events[-1][2]["session_id"] == "sess-1"
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}, "mode": "stream"}
    ) as resp:
        events = await read_sse(resp)
    assert "session_id" not in events[-1][2]


# -- settings ------------------------------------------------------------------------------------
def test_sse_send_timeout_and_stream_resume_grace_defaults_env_and_checks():
    settings = Settings.build({}, {})
    assert settings.sse_send_timeout == 30.0 and settings.stream_resume_grace == 5.0
    env = {"NEXUS_SSE_SEND_TIMEOUT": "2.5", "NEXUS_STREAM_RESUME_GRACE": "0"}
    settings = Settings.build({}, env)
    assert settings.sse_send_timeout == 2.5 and settings.stream_resume_grace == 0.0
    with pytest.raises(ConfigurationError, match="sse_send_timeout"):
        Settings.build({"sse_send_timeout": 0}, {}).validate()
    with pytest.raises(ConfigurationError, match="stream_resume_grace"):
        Settings.build({"stream_resume_grace": -1}, {}).validate()


def test_python_client_reads_the_number_of_an_execute_stream_id(nexus_thread_server):
    from nexus_aio.client import NexusClient

    url = nexus_thread_server(make_app(load_entry_points=False))
    with NexusClient(url) as client:
        events = list(client.stream("countdown", {"start": 3}))
    assert events[0].event == "start" and events[-1].event == "complete"
    assert [e.id for e in events] == list(range(1, len(events) + 1))
