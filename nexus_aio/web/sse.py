"""Server-sent events in the spec's wire format: ``id``, ``event``, ``data`` (JSON), blank line.

Keepalive events (``event: keepalive``) repeat the id of the last real event, so a browser's
``Last-Event-ID`` always names a stored event and resuming never skips or repeats one.
A disconnected client is noticed within a second, even when the workflow is silent. Once the
response has started, every failure is told as an ``event: error`` and the stream ends: a
second HTTP status line is never written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from nexus_aio.envelope import error_envelope, iso_timestamp
from nexus_aio.errors import NexusError
from nexus_aio.execution.service import ExecutionService, RunRequest
from nexus_aio.web.keys import RATE_HEADERS, REQUEST_ID, STREAM_RESPONSE, nexus_of
from nexus_aio.web.responses import dumps

if TYPE_CHECKING:
    from nexus_aio.execution.events import EventLog
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
    request[STREAM_RESPONSE] = resp
    return resp


def _closed(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class EventWriter:
    """Writes events to an open SSE response and remembers the last id sent."""

    __slots__ = ("last_seq", "resp")

    def __init__(self, resp: web.StreamResponse, after_seq: int = 0) -> None:
        self.resp = resp
        self.last_seq = after_seq

    async def events(self, events: list[ExecutionEvent]) -> None:
        try:
            data = format_events(events)
        except NexusError:  # one event cannot be sent: send those before it, then fail there
            for event in events:
                await self.resp.write(format_event(event.seq, event.type, event.data))
                self.last_seq = event.seq
            raise
        await self.resp.write(data)
        self.last_seq = events[-1].seq

    async def keepalive(self) -> None:
        data = {"timestamp": iso_timestamp()}
        await self.resp.write(format_event(self.last_seq, "keepalive", data))

    async def fail(self, exc: Exception, execution_id: str) -> None:
        """Tell the client of a failure after the response started, as the last event (its id
        follows the last one sent), and end the stream."""
        error = exc if isinstance(exc, NexusError) else NexusError("Internal server error")
        if not isinstance(exc, NexusError):
            log.error("stream of %s failed", execution_id, exc_info=exc)
        data = error_envelope(error, execution_id)
        try:
            await self.resp.write(format_event(self.last_seq + 1, "error", data))
            await self.resp.write_eof()
        except DISCONNECTED:
            pass


async def pump(request: web.Request, out: EventWriter, events: EventLog) -> bool:
    """Write ``events`` after ``out.last_seq`` until the log finishes; False if the client
    left."""
    keepalive = nexus_of(request).settings.sse_keepalive
    loop = asyncio.get_running_loop()
    index = max(out.last_seq, 0)
    last_sent = loop.time()
    while True:
        pending = events.events
        if index < len(pending):
            batch = pending[index:]
            index = len(pending)
            await out.events(batch)
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
            await out.keepalive()
            last_sent = loop.time()


async def relay(
    request: web.Request, out: EventWriter, events: AsyncIterator[ExecutionEvent]
) -> bool:
    """Write events from any source (the store, another instance) with keepalives while it is
    quiet; False if the client left."""
    keepalive = nexus_of(request).settings.sse_keepalive
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    following = aiter(events)
    pending: asyncio.Future[ExecutionEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(following))
            wait = max(0.0, min(DISCONNECT_POLL, keepalive - (loop.time() - last_sent)))
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if done:
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return True
                finally:
                    pending = None
                await out.events([event])
                last_sent = loop.time()
                continue
            if _closed(request):
                return False
            if loop.time() - last_sent >= keepalive:
                await out.keepalive()
                last_sent = loop.time()
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(following, "aclose", None)
        if aclose is not None:
            await aclose()


async def stream_execution(
    request: web.Request,
    service: ExecutionService,
    execution_id: str,
    after_seq: int,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """SSE of an execution's events after ``after_seq``: the live log of a run of this process,
    else what the service follows (stored events, then live ones from another process)."""
    out = EventWriter(await open_stream(request, headers), after_seq)
    try:
        live = service.live(execution_id)
        if live is not None:
            finished = await pump(request, out, live.log)
        else:
            finished = await relay(request, out, service.follow(execution_id, after_seq))
        if finished:
            await out.resp.write_eof()
    except DISCONNECTED:
        pass
    except Exception as exc:
        await out.fail(exc, execution_id)
    return out.resp


async def stream_run(
    request: web.Request, service: ExecutionService, run: RunRequest
) -> web.StreamResponse:
    """Start ``run`` and stream its events; errors before the stream opens are plain HTTP."""
    live = await service.stream(run)
    execution_id = live.record.id
    cancel_on_disconnect = service.settings.cancel_on_disconnect
    headers = {"X-Session-ID": run.session_id} if run.session_id else None
    try:
        out = EventWriter(await open_stream(request, headers))
    except BaseException:  # nobody will read this run's events
        await asyncio.shield(service.cancel(execution_id))
        raise
    try:
        finished = await pump(request, out, live.log)
    except asyncio.CancelledError:
        if cancel_on_disconnect:
            await asyncio.shield(service.cancel(execution_id))
        raise
    except DISCONNECTED:
        finished = False
    except Exception as exc:
        await service.cancel(execution_id)
        await out.fail(exc, execution_id)
        return out.resp
    if not finished:
        if cancel_on_disconnect:
            await service.cancel(execution_id)
        log.debug("client left the stream of %s", execution_id)
        return out.resp
    try:
        await out.resp.write_eof()
    except DISCONNECTED:
        pass
    return out.resp
