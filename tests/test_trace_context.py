"""W3C trace context: continued from ``traceparent`` or started, answered, logged."""

from __future__ import annotations

import os
import re

import pytest

from nexus_aio.testing import make_app
from nexus_aio.tracing import new_trace, parse_traceparent, trace_from_headers

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def ids(header: str) -> tuple[str, str, str]:
    match = TRACEPARENT.match(header)
    assert match, header
    return match.group(1), match.group(2), match.group(3)


async def execute(http, url, headers=None):
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}}, headers=headers or {}
    ) as resp:
        await resp.read()
        return resp


async def test_a_callers_traceparent_is_continued_with_a_new_span(nexus_server, http):
    url = await nexus_server(make_app())
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    resp = await execute(http, url, {"traceparent": caller, "tracestate": "vendor=1"})
    trace_id, span_id, flags = ids(resp.headers["traceparent"])
    assert (trace_id, flags) == (CALLER_TRACE, "01")
    assert span_id != CALLER_SPAN


async def test_an_unsampled_callers_flags_are_kept(nexus_server, http):
    url = await nexus_server(make_app())
    resp = await execute(http, url, {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"})
    assert ids(resp.headers["traceparent"])[::2] == (CALLER_TRACE, "00")


async def test_without_traceparent_each_request_starts_its_own_trace(nexus_server, http):
    url = await nexus_server(make_app())
    first = ids((await execute(http, url)).headers["traceparent"])
    second = ids((await execute(http, url)).headers["traceparent"])
    assert first[0] != second[0] and first[1] != second[1]


@pytest.mark.parametrize(
    "header",
    [
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # all-zero trace id
        f"00-{CALLER_TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",  # forbidden version
        f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01",  # upper-case hex
        f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra",  # version 00 has four fields
        f"00-{CALLER_TRACE[:-1]}-{CALLER_SPAN}-01",  # short trace id
        "garbage",
        "",
    ],
)
async def test_an_invalid_traceparent_starts_a_new_trace(nexus_server, http, header):
    url = await nexus_server(make_app())
    resp = await execute(http, url, {"traceparent": header})
    assert resp.status == 200
    assert ids(resp.headers["traceparent"])[0] != CALLER_TRACE


def test_a_forked_worker_never_repeats_its_parents_trace_ids():
    """``serve --workers`` forks: ids come from a generator the child reseeds."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, through the pipe
        os.close(read)
        os.write(write, " ".join(new_trace().trace_id for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    parent = {new_trace().trace_id for _ in range(3)}
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 3 and not parent & child


def test_a_later_version_may_carry_more_fields():
    parsed = parse_traceparent(f"01-{CALLER_TRACE}-{CALLER_SPAN}-01-future")
    assert parsed == (CALLER_TRACE, CALLER_SPAN, "01")


def test_tracestate_is_passed_on_only_with_a_valid_traceparent():
    kept = trace_from_headers(f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "a=1,b=2")
    assert kept.tracestate == "a=1,b=2" and kept.parent_id == CALLER_SPAN
    dropped = trace_from_headers("nonsense", "a=1")
    assert dropped.tracestate is None and dropped.parent_id is None


async def test_error_responses_carry_traceparent_too(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.post(f"{url}/workflows/nope/execute", json={}) as resp:
        assert resp.status == 404
        assert ids(resp.headers["traceparent"])


def test_log_lines_name_the_trace(server_process, tmp_path):
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    import requests

    with server_process(["serve", "--log-format", "json"], cwd=tmp_path) as server:
        resp = requests.post(
            f"{server.url}/workflows/fail/execute",
            json={"inputs": {"message": "boom"}},
            headers={"traceparent": caller},
            timeout=10,
        )
        assert resp.status_code == 500
        output = server.stop()
    lines = [line for line in output.splitlines() if CALLER_TRACE in line]
    assert any('"trace_id":"' + CALLER_TRACE in line for line in lines), output[-2000:]


async def test_the_record_and_the_stream_start_event_carry_the_trace_id(nexus_server, http):
    from nexus_aio.testing import read_sse

    url = await nexus_server(make_app())
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    async with http.post(
        f"{url}/workflows/countdown/execute",
        json={"inputs": {"start": 2}, "mode": "stream"},
        headers={"traceparent": caller},
    ) as resp:
        events = await read_sse(resp)
    start = next(data for _, kind, data in events if kind == "start")
    assert start["trace_id"] == CALLER_TRACE
    async with http.get(f"{url}/executions/{start['workflow_id']}?wait=5") as resp:
        record = await resp.json()
    assert record["trace_id"] == CALLER_TRACE


async def test_an_async_run_keeps_the_trace_of_the_request_that_submitted_it(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.post(
        f"{url}/workflows/sum/execute",
        json={"inputs": {"a": 1, "b": 2}, "mode": "async"},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    ) as resp:
        execution_id = (await resp.json())["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}?wait=5") as resp:
        record = await resp.json()
    assert (record["status"], record["trace_id"]) == ("succeeded", CALLER_TRACE)
