"""Server-sent events in the spec's wire format: ``id``, ``event``, ``data`` (JSON), blank line.

Keepalive events (``event: keepalive``) repeat the id of the last real event, so a browser's
``Last-Event-ID`` always names a stored event and resuming never skips or repeats one.
A disconnected client is noticed within a second, even when the workflow is silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from nexus_aio.envelope import iso_timestamp
from nexus_aio.web.keys import RATE_HEADERS, REQUEST_ID, nexus_of
from nexus_aio.web.responses import dumps

if TYPE_CHECKING:
    from nexus_aio.execution.runtime import EventLog, Submission
    from nexus_aio.stores.executions import ExecutionEvent

log = logging.getLogger("nexus_aio.sse")
DISCONNECT_POLL = 1.0
DISCONNECTED = (ConnectionResetError, ClientConnectionResetError, ConnectionError)


def format_event(seq: int, event: str, data: Any) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), dumps(data))


def format_events(events: Iterable[ExecutionEvent]) -> bytes:
    return b"".join(format_event(e.seq, e.type, e.data) for e in events)


async def open_stream(
    request: web.Request, headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-ID": request.get(REQUEST_ID, ""),
            **request.get(RATE_HEADERS, {}),
            **(headers or {}),
        }
    )
    await resp.prepare(request)
    return resp


def _closed(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def pump(
    request: web.Request, resp: web.StreamResponse, events: EventLog, after_seq: int = 0
) -> bool:
    """Write ``events`` after ``after_seq`` until the log finishes; False if the client left."""
    keepalive = nexus_of(request).settings.sse_keepalive
    loop = asyncio.get_running_loop()
    index = max(after_seq, 0)
    last_sent = loop.time()
    try:
        while True:
            pending = events.events
            if index < len(pending):
                await resp.write(format_events(pending[index:]))
                index = len(pending)
                last_sent = loop.time()
            if events.finished and index >= len(events.events):
                return True
            changed = events.changed()
            if index < len(events.events) or events.finished:
                continue  # pushed while we were writing: that push set no event we wait on
            wait = min(DISCONNECT_POLL, keepalive - (loop.time() - last_sent))
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await changed.wait()
                    continue
                except TimeoutError:
                    pass
            if _closed(request):
                return False
            if loop.time() - last_sent >= keepalive:
                await resp.write(format_event(index, "keepalive", {"timestamp": iso_timestamp()}))
                last_sent = loop.time()
    except DISCONNECTED:
        return False


async def stream_submission(request: web.Request, sub: Submission) -> web.StreamResponse:
    """Run ``sub`` in the background and stream its events; errors before this are plain HTTP."""
    nexus = nexus_of(request)
    runtime = nexus.runtime
    assert runtime is not None
    live = await runtime.start(sub)
    headers = {"X-Session-ID": sub.session_id} if sub.session_id else None
    try:
        resp = await open_stream(request, headers)
        finished = await pump(request, resp, live.log)
    except asyncio.CancelledError:
        finished = False
        if nexus.settings.cancel_on_disconnect:
            await asyncio.shield(runtime.cancel(sub.execution_id))
        raise
    if not finished:
        if nexus.settings.cancel_on_disconnect:
            await runtime.cancel(sub.execution_id)
        log.debug("client left the stream of %s", sub.execution_id)
        return resp
    try:
        await resp.write_eof()
    except DISCONNECTED:
        pass
    return resp
