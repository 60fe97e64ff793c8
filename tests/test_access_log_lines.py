"""The access line's fast path (``LineHandler.line_writer``) prints what ``logging`` would, keeps
the order of lines, and steps aside whenever a user's logging setup could see or change them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import requests

from nexus_aio.logs import (
    TEXT_FORMAT,
    JSONFormatter,
    LineHandler,
    TextFormatter,
    TraceLogFilter,
    line_writer_for,
)
from nexus_aio.testing import ServerProcess
from nexus_aio.tracing import TraceContext, current_trace

FIELDS = {
    "request_id": "req-1",
    "trace_id": "ab" * 16,
    "method": "POST",
    "path": "/workflows/sum/execute",
    "workflow": "sum",
    "status": 200,
    "duration_ms": 0.5,
}
MESSAGE = f"req-1 POST /workflows/sum/execute sum 200 0.50ms trace={'ab' * 16}"
TEXT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def isolated_logger() -> Iterator[logging.Logger]:
    """A logger tree of its own (``probe.access`` under ``probe``), not the root's."""
    parent = logging.getLogger("probe")
    child = logging.getLogger("probe.access")
    saved = parent.handlers[:], parent.filters[:], parent.propagate, child.propagate
    parent.propagate = False
    child.setLevel(logging.INFO)
    yield child
    parent.handlers[:], parent.filters[:], parent.propagate, child.propagate = saved
    child.filters.clear()
    child.handlers.clear()


def _handler(fmt: str) -> tuple[LineHandler, io.StringIO]:
    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.addFilter(TraceLogFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    return handler, stream


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_fast_line_matches_what_logging_prints(isolated_logger, fmt):
    handler, stream = _handler(fmt)
    logging.getLogger("probe").handlers[:] = [handler]
    token = current_trace.set(TraceContext(FIELDS["trace_id"], "cd" * 8))  # as in a request
    try:
        isolated_logger.info("%s", MESSAGE, extra={"fields": FIELDS})
    finally:
        current_trace.reset(token)
    write = line_writer_for(isolated_logger)
    assert write is not None
    write(MESSAGE, FIELDS["trace_id"], FIELDS)  # no running loop: written at once
    via_logging, fast = stream.getvalue().splitlines()
    if fmt == "json":
        slow_data, fast_data = json.loads(via_logging), json.loads(fast)
        slow_data.pop("ts"), fast_data.pop("ts")
        assert list(fast_data) == list(slow_data)  # same keys in the same order
        assert fast_data == slow_data
        assert fast_data["trace_id"] == FIELDS["trace_id"]
    else:
        assert TEXT_TIME.match(fast) and TEXT_TIME.match(via_logging)
        assert TEXT_TIME.sub("", fast) == TEXT_TIME.sub("", via_logging)
        assert f" INFO probe.access: {MESSAGE}" in fast


def test_lines_of_one_loop_pass_are_written_together_and_before_later_records(isolated_logger):
    handler, stream = _handler("text")
    logging.getLogger("probe").handlers[:] = [handler]
    write = line_writer_for(isolated_logger)
    assert write is not None

    async def scenario() -> tuple[str, str]:
        write("first", "-", {})
        write("second", "-", {})
        pending = stream.getvalue()
        isolated_logger.warning("a warning after them")  # written after the buffered lines
        return pending, stream.getvalue()

    pending, after = asyncio.run(scenario())
    assert pending == ""  # buffered until the end of the loop pass
    messages = [line.split(": ", 1)[1] for line in after.splitlines()]
    assert messages == ["first", "second", "a warning after them"]


def test_buffered_lines_are_written_at_the_end_of_the_loop_pass(isolated_logger):
    handler, stream = _handler("json")
    logging.getLogger("probe").handlers[:] = [handler]
    write = line_writer_for(isolated_logger)
    assert write is not None

    async def scenario() -> str:
        write("one", "-", {"status": 200})
        await asyncio.sleep(0)  # one pass of the loop
        return stream.getvalue()

    lines = [json.loads(x) for x in asyncio.run(scenario()).splitlines()]
    assert [(x["message"], x["status"]) for x in lines] == [("one", 200)]
    assert "trace_id" not in lines[0]


def test_other_handlers_filters_or_formats_get_the_logging_path(isolated_logger):
    parent = logging.getLogger("probe")
    handler, _ = _handler("text")
    parent.handlers[:] = [handler, logging.StreamHandler(io.StringIO())]
    assert line_writer_for(isolated_logger) is None  # a second handler must see every line
    parent.handlers[:] = [handler]
    assert line_writer_for(isolated_logger) is not None
    isolated_logger.addFilter(lambda record: True)
    assert line_writer_for(isolated_logger) is None  # a filter could drop or change lines
    isolated_logger.filters.clear()
    handler.setFormatter(TextFormatter("%(message)s"))
    assert line_writer_for(isolated_logger) is None  # a format of the user's own
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    assert line_writer_for(isolated_logger) is None
    parent.handlers[:] = [logging.StreamHandler(io.StringIO())]
    assert line_writer_for(isolated_logger) is None


def test_served_access_lines_are_complete_and_in_request_order(tmp_path):
    server = ServerProcess(["serve"], cwd=tmp_path)
    ids = [f"req-order-{i}" for i in range(30)]
    with server, requests.Session() as http:
        for rid in ids:
            r = http.post(
                f"{server.url}/workflows/sum/execute",
                json={"inputs": {"a": 1, "b": 2}},
                headers={"X-Request-ID": rid},
                timeout=10,
            )
            assert r.status_code == 200
    out = server.stop()
    access = [x for x in out.splitlines() if " INFO nexus_aio.access: req-order-" in x]
    assert [x.split("access: ")[1].split()[0] for x in access] == ids
    assert all(TEXT_TIME.match(x) and " sum 200 " in x for x in access)
