"""Server-sent events in the spec's wire format: ``id``, ``event``, ``data`` (JSON), blank line.

Responses are aiohttp-sse's ``EventSourceResponse`` (``sep="\\n"``): its ``send_timeout``
(setting ``sse_send_timeout``) and ``TCP_USER_TIMEOUT`` drop a client that stops reading or
vanishes instead of buffering for it. Its comment pings are off: a quiet stream carries our own
``event: keepalive`` events, which repeat the id of the last real event, so a browser's
``Last-Event-ID`` always names a stored event and resuming never skips or repeats one.

Event ids: ``/executions/{id}/events`` numbers events ``1, 2, ...`` (the execution is in the
path). A stream opened by ``POST|GET /workflows/{name}/execute`` prefixes them with the
execution, ``<workflow_id>:<n>``, so that a browser ``EventSource`` reconnecting to the same
URL with that ``Last-Event-ID`` resumes the execution it was following
(:func:`resume_stream`) instead of starting another; it sends ``retry:`` once, with its first
event. A run whose last stream client left is cancelled (``cancel_on_disconnect``) only after
``stream_resume_grace`` seconds, so that the reconnect finds it alive.

A disconnected client is noticed within a second, even when the workflow is silent. Once the
response has started, every failure is told as an ``event: error`` and the stream ends: a
second HTTP status line is never written.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp_sse import EventSourceResponse

from nexus_aio.envelope import error_envelope, iso_timestamp
from nexus_aio.errors import NexusError, ValidationError
from nexus_aio.execution.service import ExecutionService, RunRequest
from nexus_aio.stores.executions import TERMINAL
from nexus_aio.web.keys import RATE_HEADERS, REQUEST_ID, STREAM_RESPONSE, nexus_of
from nexus_aio.web.responses import dumps

if TYPE_CHECKING:
    from nexus_aio.execution.events import EventLog
    from nexus_aio.stores.executions import ExecutionEvent

log = logging.getLogger("nexus_aio.sse")
DISCONNECT_POLL = 1.0
# A client gone (reset) or dropped for not reading within ``sse_send_timeout`` (TimeoutError).
DISCONNECTED = (ConnectionResetError, ClientConnectionResetError, ConnectionError, TimeoutError)
LAST_EVENT_ID = "Last-Event-ID"
NO_PINGS = 1e9  # seconds: aiohttp-sse's ``: ping`` comments never come; keepalive events do
RETRY_MS = 1000  # the ``retry:`` of execute streams (at most half of ``stream_resume_grace``)
MAX_SEQ = 2**63 - 1
# ``<n>`` or ``<workflow_id>:<n>``; ``n`` in ASCII digits (``int()`` would take ``1_0``, `` 1``,
# ``+1`` and other scripts' digits).
_EVENT_ID = re.compile(r"(?:([A-Za-z0-9_-]{1,64}):)?([0-9]{1,19})")


def parse_event_id(text: str) -> tuple[str | None, int]:
    """``(execution_id, seq)`` of a ``Last-Event-ID``: ``n`` (``execution_id`` None) or
    ``<workflow_id>:n``; anything else (``n`` not a non-negative ASCII integer below 2^63) is
    a 400."""
    match = _EVENT_ID.fullmatch(text)
    if match is None or int(match[2]) > MAX_SEQ:
        raise ValidationError(
            f"Invalid Last-Event-ID: {text[:80]!r} (an event id from this stream)",
            details={
                "field": LAST_EVENT_ID,
                "expected": "an integer from 0 to 2^63-1, or <workflow_id>:<integer>",
                "received": text[:80],
            },
        )
    return match[1], int(match[2])


def format_event(seq: int, event: str, data: Any) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), dumps(data))


def format_events(events: Iterable[ExecutionEvent]) -> bytes:
    return b"".join(format_event(e.seq, e.type, e.data) for e in events)


def retry_ms(service: ExecutionService) -> int:
    """The reconnect delay execute streams announce: shorter than ``stream_resume_grace`` so a
    reconnecting browser finds its run alive."""
    settings = service.settings
    if not settings.cancel_on_disconnect:
        return RETRY_MS
    return min(RETRY_MS, int(settings.stream_resume_grace * 500))


async def open_stream(
    request: web.Request, headers: Mapping[str, str] | None = None
) -> EventSourceResponse:
    if request.transport is None:  # gone before the stream opened: end quietly, as aiohttp-sse
        raise asyncio.CancelledError  # does (an error would be logged and answered to nobody)
    resp = EventSourceResponse(
        headers={
            "X-Request-ID": request.get(REQUEST_ID, ""),
            **request.get(RATE_HEADERS, {}),
            **(headers or {}),
        },
        sep="\n",
        allow_all_methods=True,  # POST streams
        send_timeout=nexus_of(request).settings.sse_send_timeout,
        ping_interval=NO_PINGS,
    )
    await resp.prepare(request)
    request[STREAM_RESPONSE] = resp
    return resp


async def end_stream(resp: EventSourceResponse) -> None:
    """The last chunk of a stream that told its execution to the end."""
    try:
        await resp.write_eof()
    except DISCONNECTED:
        pass


async def _serve(
    out: EventWriter, execution_id: str, pumping: Coroutine[Any, Any, bool]
) -> web.StreamResponse:
    """Await ``pumping`` (True: the execution ended; False: the client left) and end the
    stream as it went: its last chunk, an ``event: error``, or nothing for a gone client. The
    response's ping task stops whatever happens."""
    try:
        try:
            finished = await pumping
        except DISCONNECTED:
            finished = False
        except Exception as exc:
            await out.fail(exc, execution_id)
            return out.resp
        if finished:
            await end_stream(out.resp)
        return out.resp
    finally:
        out.resp.stop_streaming()


def _closed(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class EventWriter:
    """Writes events to an open SSE response and remembers the last id sent; ``prefix`` (the
    execution of an execute stream) goes before each id, ``retry`` (ms) with the first event.

    One event goes through ``EventSourceResponse.send``; a burst (a workflow that pushed many
    events since the last write) is formatted alike and written at once, under the same send
    timeout and with the same abort, since a write per event would cost a system call each.
    """

    __slots__ = ("last_seq", "prefix", "request", "resp", "retry", "send_timeout")

    def __init__(
        self,
        request: web.Request,
        resp: EventSourceResponse,
        after_seq: int = 0,
        prefix: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.request = request
        self.resp = resp
        self.last_seq = after_seq
        self.prefix = prefix
        self.retry = retry
        self.send_timeout = nexus_of(request).settings.sse_send_timeout

    def _id(self, seq: int) -> str:
        return str(seq) if self.prefix is None else f"{self.prefix}:{seq}"

    async def send(self, seq: int, event: str, data: Any) -> None:
        text = dumps(data).decode()  # before the id: data that cannot be sent fails here
        retry, self.retry = self.retry, None
        await self.resp.send(text, id=self._id(seq), event=event, retry=retry)

    def _format(self, seq: int, event: str, data: Any) -> bytes:
        """What :meth:`send` writes (JSON holds no line break; event names are checked)."""
        head = b"id: %s\nevent: %s\ndata: %s\n" % (
            self._id(seq).encode(),
            event.encode(),
            dumps(data),
        )
        if self.retry is None:
            return head + b"\n"
        retry, self.retry = self.retry, None
        return head + b"retry: %d\n\n" % retry

    async def _write(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.resp.write(data)
        except TimeoutError:  # a client that does not read: dropped, as send() does
            self.resp.stop_streaming()
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            raise

    async def events(self, events: list[ExecutionEvent]) -> None:
        if len(events) == 1:
            event = events[0]
            await self.send(event.seq, event.type, event.data)
            self.last_seq = event.seq
            return
        parts = []
        try:
            for event in events:
                parts.append(self._format(event.seq, event.type, event.data))
        except NexusError:  # one event cannot be sent: send those before it, then fail there
            if parts:
                await self._write(b"".join(parts))
                self.last_seq += len(parts)
            raise
        await self._write(b"".join(parts))
        self.last_seq = events[-1].seq

    async def keepalive(self) -> None:
        await self.send(self.last_seq, "keepalive", {"timestamp": iso_timestamp()})

    async def fail(self, exc: Exception, execution_id: str) -> None:
        """Tell the client of a failure after the response started, as the last event (its id
        follows the last one sent), and end the stream."""
        error = exc if isinstance(exc, NexusError) else NexusError("Internal server error")
        if not isinstance(exc, NexusError):
            log.error("stream of %s failed", execution_id, exc_info=exc)
        data = error_envelope(error, execution_id)
        try:
            await self.send(self.last_seq + 1, "error", data)
        except DISCONNECTED:
            return
        await end_stream(self.resp)


async def pump(request: web.Request, out: EventWriter, events: EventLog) -> bool:
    """Write ``events`` after ``out.last_seq`` until the log finishes; False if the client
    left (a client that does not read for ``sse_send_timeout`` raises ``TimeoutError``)."""
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


async def _prepend(
    first: ExecutionEvent, rest: AsyncIterator[ExecutionEvent]
) -> AsyncIterator[ExecutionEvent]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


async def stream_execution(
    request: web.Request,
    service: ExecutionService,
    execution_id: str,
    after_seq: int,
    headers: dict[str, str] | None = None,
    *,
    resumable: bool = False,
) -> web.StreamResponse:
    """SSE of an execution's events after ``after_seq``: the live log of a run of this process,
    else what the service follows (stored events, then live ones from another process).
    ``resumable``: the ids and ``retry:`` of an execute stream (see :func:`resume_stream`)."""
    prefix = execution_id if resumable else None
    retry = retry_ms(service) if resumable else None
    out = EventWriter(request, await open_stream(request, headers), after_seq, prefix, retry)
    live = service.live(execution_id)
    if live is not None:
        return await _serve(out, execution_id, pump(request, out, live.log))
    return await _serve(
        out, execution_id, relay(request, out, service.follow(execution_id, after_seq))
    )


async def _follow_stream(
    request: web.Request,
    service: ExecutionService,
    execution_id: str,
    out: EventWriter,
    events: EventLog,
) -> web.StreamResponse:
    """Pump a live run of this process to an execute stream's client; a client that leaves
    (or stops reading) detaches, which cancels the run after the resume grace when
    ``cancel_on_disconnect`` is on."""
    cancel_on_disconnect = service.settings.cancel_on_disconnect
    try:
        try:
            finished = await pump(request, out, events)
        except DISCONNECTED:
            finished = False
        except asyncio.CancelledError:
            service.detach(execution_id, cancel=cancel_on_disconnect)
            raise
        except Exception as exc:
            service.detach(execution_id, cancel=False)
            await service.cancel(execution_id)
            await out.fail(exc, execution_id)
            return out.resp
        service.detach(execution_id, cancel=cancel_on_disconnect and not finished)
        if finished:
            await end_stream(out.resp)
        else:
            log.debug("client left the stream of %s", execution_id)
        return out.resp
    finally:
        out.resp.stop_streaming()


async def stream_run(
    request: web.Request, service: ExecutionService, run: RunRequest
) -> web.StreamResponse:
    """Start ``run`` and stream its events; errors before the stream opens are plain HTTP."""
    live = await service.stream(run)
    execution_id = live.record.id
    headers = {"X-Session-ID": run.session_id} if run.session_id else None
    try:
        resp = await open_stream(request, headers)
    except BaseException:  # nobody will read this run's events
        await asyncio.shield(service.cancel(execution_id))
        raise
    service.attach(execution_id)
    out = EventWriter(request, resp, 0, execution_id, retry_ms(service))
    return await _follow_stream(request, service, execution_id, out, live.log)


async def resume_stream(
    request: web.Request,
    service: ExecutionService,
    execution_id: str,
    after_seq: int,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """An execute stream's client reconnected with ``Last-Event-ID: <workflow_id>:<n>``: the
    events of that execution after ``n``, with the ids and ``retry:`` of the first stream. A
    run of this process is followed again (which calls off the cancellation its client's
    leaving scheduled); a finished one is replayed; one already told to its end is a
    ``204 No Content``, which stops an ``EventSource`` from reconnecting."""
    live = service.live(execution_id)
    if live is not None:
        service.attach(execution_id)
        try:
            resp = await open_stream(request, headers)
        except BaseException:
            service.detach(execution_id, cancel=service.settings.cancel_on_disconnect)
            raise
        out = EventWriter(request, resp, after_seq, execution_id, retry_ms(service))
        return await _follow_stream(request, service, execution_id, out, live.log)
    record = await service.get(execution_id)
    if record is not None and record.status in TERMINAL:
        rest = aiter(service.follow(execution_id, after_seq))
        try:
            first = await anext(rest)
        except StopAsyncIteration:
            return web.Response(status=204, headers=headers)
        events: AsyncIterator[ExecutionEvent] = _prepend(first, rest)
    else:  # running in another process: follow it through the store
        events = service.follow(execution_id, after_seq)
    resp = await open_stream(request, headers)
    out = EventWriter(request, resp, after_seq, execution_id, retry_ms(service))
    return await _serve(out, execution_id, relay(request, out, events))
