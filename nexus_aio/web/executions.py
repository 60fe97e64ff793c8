"""Execution history over HTTP: look up, long-poll, list, replay events, cancel; idempotent execute.

Every execution a client ever saw a ``workflow_id`` for is in the store (sync and stream runs too),
so these routes answer for all of them. Executions still running in this process are read from
``Runtime.live`` (fresher than the store); ones running in another process (``--workers``) are
followed by polling the shared store.

``Idempotency-Key`` on execute is handled by :class:`Idempotency`, which the execute handler calls
only when the header is present: requests without it pay one header lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from nexus_aio.envelope import error_envelope, iso_timestamp
from nexus_aio.errors import (
    Conflict,
    ExecutionNotFound,
    Forbidden,
    IdempotencyConflict,
    NexusError,
    Unauthorized,
    ValidationError,
)
from nexus_aio.execution.runtime import Runtime, actor_id
from nexus_aio.stores.executions import TERMINAL, ExecutionEvent, ExecutionRecord, IdempotencyEntry
from nexus_aio.web.keys import ACTOR, EXECUTION_ID, WORKFLOW_NAME, nexus_of
from nexus_aio.web.request import read_body
from nexus_aio.web.responses import JSON_HEADERS, dumps, json_response
from nexus_aio.web.routes import check_permission
from nexus_aio.web.sse import DISCONNECTED, format_event, format_events, open_stream, pump

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus
    from nexus_aio.stores.executions import ExecutionStore

log = logging.getLogger("nexus_aio.stores.executions")

MAX_WAIT = 60.0  # long-poll cap: beyond it proxies and clients time out anyway
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
STORE_POLL = 0.25  # how often to re-read an execution running in another process
SETTLE_TIMEOUT = 2.0  # how long to wait for a finished execution's final (durable) save
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
IDEMPOTENT_PASS = web.RequestKey("nexus_aio.idempotent_pass", bool)
RETENTION_INTERVAL = 600.0
EVENT_PERSIST_INTERVAL = 0.25

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- helpers ---------------------------------------------------------------------------------------
def _runtime(request: web.Request) -> Runtime:
    runtime = nexus_of(request).runtime
    assert runtime is not None, "execution routes run only while the app runs"
    return runtime


def visible_to(request: web.Request, record: ExecutionRecord) -> bool:
    """An execution started by an actor belongs to that actor; anonymous ones to everybody."""
    return record.actor is None or record.actor == actor_id(request.get(ACTOR))


def check_owner(request: web.Request, record: ExecutionRecord) -> None:
    if visible_to(request, record):
        return
    if request.get(ACTOR) is None:
        raise Unauthorized("Authentication required for this execution")
    raise Forbidden("This execution belongs to another actor", details={"execution_id": record.id})


def parse_wait(text: str | None) -> float:
    """``?wait=N``: seconds to long-poll, capped at :data:`MAX_WAIT`; 0 when absent."""
    if text is None or text == "":
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError(
            f"Invalid wait: {text!r} (seconds, a number from 0 to {MAX_WAIT:g})",
            details={"field": "wait", "expected": "number >= 0", "received": text},
        )
    return min(seconds, MAX_WAIT)


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"Invalid limit: {text!r} (an integer from 1 to {MAX_LIMIT})",
            details={"field": "limit", "expected": f"integer 1..{MAX_LIMIT}", "received": text},
        )
    return limit


def parse_last_event_id(request: web.Request) -> int:
    """The ``Last-Event-ID`` header (what a reconnecting ``EventSource`` sends), else the
    ``?last_event_id=`` parameter; 0 (from the start) when neither is given."""
    text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if not text:
        return 0
    try:
        seq = int(text)
    except ValueError:
        seq = -1
    if seq < 0:
        raise ValidationError(
            f"Invalid Last-Event-ID: {text!r} (an event id from this stream)",
            details={"field": "Last-Event-ID", "expected": "integer >= 0", "received": text},
        )
    return seq


async def load_record(request: web.Request) -> ExecutionRecord:
    execution_id = request.match_info["execution_id"]
    request[EXECUTION_ID] = execution_id
    record = await _runtime(request).get_record(execution_id)
    if record is None:
        raise ExecutionNotFound(
            f"Execution {execution_id!r} not found", details={"execution_id": execution_id}
        )
    check_owner(request, record)
    return record


async def settled(runtime: Runtime, record: ExecutionRecord) -> ExecutionRecord:
    """A live execution's status turns terminal just before its final save; wait for that save,
    so a status a client has seen survives a crash (async saves are durable)."""
    live = runtime.live.get(record.id)
    if live is not None and record.status in TERMINAL and live.task and not live.task.done():
        await asyncio.wait({live.task}, timeout=SETTLE_TIMEOUT)
    return record


async def wait_for(runtime: Runtime, execution_id: str, seconds: float) -> ExecutionRecord | None:
    """The record once terminal, or as it is after ``seconds``."""
    if execution_id in runtime.live:
        return await runtime.wait(execution_id, seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:  # running in another process: only the shared store knows
        record = await runtime.get_record(execution_id)
        remaining = deadline - loop.time()
        if record is None or record.status in TERMINAL or remaining <= 0:
            return record
        await asyncio.sleep(min(STORE_POLL, remaining))


# -- GET /executions/{id} --------------------------------------------------------------------------
async def get_execution(request: web.Request) -> web.Response:
    """The record; ``?wait=N`` holds the request up to N seconds until the execution finishes."""
    await check_permission(request, "read", "executions")
    seconds = parse_wait(request.query.get("wait"))
    record = await load_record(request)
    runtime = _runtime(request)
    if seconds > 0 and record.status not in TERMINAL:
        record = await wait_for(runtime, record.id, seconds) or record
    record = await settled(runtime, record)
    return json_response(record.to_dict())


# -- GET /executions -------------------------------------------------------------------------------
async def list_executions(request: web.Request) -> web.Response:
    """History, newest first: ``?workflow=&status=&limit=&cursor=``.

    A page holds only executions the caller may see, so with auth on it may be shorter than
    ``limit`` while ``next_cursor`` still leads on.
    """
    await check_permission(request, "read", "executions")
    query = request.query
    limit = parse_limit(query.get("limit"))
    runtime = _runtime(request)
    records, next_cursor = await runtime.executions.list(
        workflow=query.get("workflow") or None,
        status=query.get("status") or None,
        limit=limit,
        cursor=query.get("cursor") or None,
    )
    live = runtime.live
    items = [
        (live[r.id].record if r.id in live else r).to_dict()
        for r in records
        if visible_to(request, r)
    ]
    return json_response({"executions": items, "next_cursor": next_cursor})


# -- GET /executions/{id}/events -------------------------------------------------------------------
def closing_event(
    runtime: Runtime, record: ExecutionRecord, last: ExecutionEvent | None
) -> ExecutionEvent | None:
    """The ``complete``/``error`` event a finished execution's log lacks (sync runs log only
    node, chunk and progress events; an interrupted run never logged its end), numbered after
    the last stored one so ids stay gapless and stable across replays."""
    if record.status not in TERMINAL:
        return None
    if last is not None and last.type in ("complete", "error"):
        return None
    envelope = runtime.envelope_for(record)[1]
    kind = "complete" if record.status == "succeeded" else "error"
    return ExecutionEvent((last.seq if last else 0) + 1, kind, envelope, record.finished_at or 0)


async def replay_stored(
    request: web.Request,
    resp: web.StreamResponse,
    runtime: Runtime,
    record: ExecutionRecord,
    after_seq: int,
) -> bool:
    """Stored events after ``after_seq``; for an execution still running elsewhere, keep polling
    the store until it ends. False if the client left."""
    keepalive = nexus_of(request).settings.sse_keepalive
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    last: ExecutionEvent | None = None
    seq = after_seq
    while True:
        events = await runtime.executions.events(record.id, seq)
        if events:
            last = events[-1]
            seq = last.seq
            await resp.write(format_events(events))
            last_sent = loop.time()
        if record.status in TERMINAL:
            break
        if request.transport is None or request.transport.is_closing():
            return False
        if loop.time() - last_sent >= keepalive:
            await resp.write(format_event(seq, "keepalive", {"timestamp": iso_timestamp()}))
            last_sent = loop.time()
        await asyncio.sleep(STORE_POLL)
        record = await runtime.get_record(record.id) or record
    if last is None and seq > 0:
        stored = await runtime.executions.events(record.id, seq - 1)
        last = stored[-1] if stored else None
    closing = closing_event(runtime, record, last)
    if closing is not None and closing.seq > after_seq:
        await resp.write(format_event(closing.seq, closing.type, closing.data))
    return True


async def stream_execution(
    request: web.Request, execution_id: str, after_seq: int, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """SSE of an execution's events after ``after_seq``: stored ones, then live ones."""
    runtime = _runtime(request)
    record = await runtime.get_record(execution_id)
    if record is None:
        raise ExecutionNotFound(
            f"Execution {execution_id!r} not found", details={"execution_id": execution_id}
        )
    resp = await open_stream(request, headers)
    try:
        live = runtime.live.get(execution_id)
        if live is not None:
            finished = await pump(request, resp, live.log, after_seq)
        else:
            finished = await replay_stored(request, resp, runtime, record, after_seq)
        if finished:
            await resp.write_eof()
    except DISCONNECTED:
        pass
    return resp


async def execution_events(request: web.Request) -> web.StreamResponse:
    """Replay then follow; ``Last-Event-ID`` resumes after that event, exactly once each."""
    await check_permission(request, "read", "executions")
    after_seq = parse_last_event_id(request)
    record = await load_record(request)
    return await stream_execution(request, record.id, after_seq)


# -- DELETE /executions/{id} -----------------------------------------------------------------------
def _finished_conflict(record: ExecutionRecord) -> Conflict:
    return Conflict(
        f"Execution {record.id!r} already finished ({record.status})",
        details={"execution_id": record.id, "status": record.status},
    )


async def cancel_execution(request: web.Request) -> web.Response:
    """Cancel a queued or running execution: 200 with the cancelled record, 409 if finished."""
    await check_permission(request, "cancel", "executions")
    record = await load_record(request)
    if record.status in TERMINAL:
        raise _finished_conflict(record)
    runtime = _runtime(request)
    cancelled = await runtime.cancel(record.id)
    record = await runtime.get_record(record.id) or record
    if record.status in TERMINAL and record.status != "cancelled":
        raise _finished_conflict(record)  # it finished before the cancellation landed
    if not cancelled and record.status != "cancelled":
        raise Conflict(
            f"Execution {record.id!r} is not running in this server process",
            details={"execution_id": record.id, "status": record.status},
        )
    return json_response(record.to_dict())


# -- idempotency -----------------------------------------------------------------------------------
def request_hash(request: web.Request, body: bytes) -> str:
    """What makes two requests "the same": method, path, query and the body as canonical JSON
    (key order and whitespace do not matter; a non-JSON body counts byte for byte)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query.items()))
    digest = hashlib.sha256(f"{request.method}\0{request.path}\0{query}\0".encode())
    digest.update(canonical)
    return digest.hexdigest()


def scoped_key(request: web.Request, key: str) -> str:
    """Keys belong to the caller: its actor id, else its address, so callers cannot collide."""
    owner = actor_id(request.get(ACTOR))
    scope = f"actor:{owner}" if owner is not None else f"client:{request.remote or ''}"
    return f"{scope}:{key}"


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(
            f"Invalid {IDEMPOTENCY_HEADER} header (1 to {MAX_KEY_LENGTH} printable characters)",
            details={
                "field": IDEMPOTENCY_HEADER,
                "expected": f"1..{MAX_KEY_LENGTH} printable characters",
                "received": f"{len(key)} characters",
            },
        )


def _worth_remembering(status: int) -> bool:
    """Responses of an execution that ran (success, 202, workflow failure, timeout). Refusals
    (4xx) and overload (429/503) are not: retrying them with the same key may well succeed."""
    return status < 400 or (status >= 500 and status != 503)


class Idempotency:
    """Same key + same request within ``idempotency_ttl`` -> the original response, not a rerun.

    Concurrent duplicates in this process queue on a per-key lock, so only the first runs; the
    others then replay its response. A stream's entry has an empty body and replays as SSE of
    the stored events.
    """

    def __init__(self, nexus: Nexus) -> None:
        self._nexus = nexus
        self._locks: dict[str, list[Any]] = {}  # key -> [asyncio.Lock, holders]

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = [asyncio.Lock(), 0]
        held[1] += 1
        try:
            async with held[0]:
                yield
        finally:
            held[1] -= 1
            if not held[1]:
                del self._locks[key]

    async def _body(self, request: web.Request) -> bytes:
        return await read_body(request)

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[WORKFLOW_NAME] = request.match_info["name"]  # for the access log of a replay
        raw_key = request.headers[IDEMPOTENCY_HEADER]
        _check_key(raw_key)
        key = scoped_key(request, raw_key)
        digest = request_hash(request, await self._body(request))
        runtime = self._nexus.runtime
        assert runtime is not None
        store = runtime.executions
        async with self._lock(key):
            entry = await store.get_idempotency(key)
            if entry is not None:
                if entry.request_hash != digest:
                    raise IdempotencyConflict(
                        f"{IDEMPOTENCY_HEADER} {raw_key!r} was already used for a different"
                        " request",
                        details={"idempotency_key": raw_key, "workflow_id": entry.execution_id},
                    )
                return await self.replay(request, entry)
            request[IDEMPOTENT_PASS] = True
            try:
                response = await handler(request)
            except NexusError as exc:
                execution_id = request.get(EXECUTION_ID)
                if execution_id and _worth_remembering(exc.status):
                    error_body = dumps(error_envelope(exc, execution_id))
                    await self._remember(store, key, digest, execution_id, exc.status, error_body)
                raise
            execution_id = request.get(EXECUTION_ID)
            if execution_id and _worth_remembering(response.status):
                body: Any = response.body if isinstance(response, web.Response) else b""
                if isinstance(body, bytes | bytearray):
                    await self._remember(
                        store, key, digest, execution_id, response.status, bytes(body)
                    )
            return response

    async def _remember(
        self,
        store: ExecutionStore,
        key: str,
        digest: str,
        execution_id: str,
        status: int,
        body: bytes,
    ) -> None:
        expires_at = time.time() + self._nexus.settings.idempotency_ttl
        entry = IdempotencyEntry(key, digest, execution_id, status, body, expires_at)
        try:
            await store.put_idempotency(entry)
        except NexusError as exc:  # the execution ran; its client still gets its answer
            log.warning("could not store idempotency key for %s: %s", execution_id, exc.message)

    async def replay(self, request: web.Request, entry: IdempotencyEntry) -> web.StreamResponse:
        """The remembered response, marked ``Idempotent-Replayed: true``."""
        await check_permission(request, "execute", request.match_info.get("name"))
        request[EXECUTION_ID] = entry.execution_id
        headers = {REPLAYED_HEADER: "true"}
        if not entry.body:  # a stream: its events, from the store (or live if still running)
            return await stream_execution(request, entry.execution_id, 0, headers)
        if entry.status == 202:
            headers["Location"] = (
                f"{self._nexus.settings.api_prefix}/executions/{entry.execution_id}"
            )
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            session_id = orjson.loads(entry.body).get("session_id")
            if isinstance(session_id, str):
                headers["X-Session-ID"] = session_id
        return web.Response(
            body=entry.body, status=entry.status, headers={**JSON_HEADERS, **headers}
        )


# -- incremental event persistence -----------------------------------------------------------------
async def persist_live_events(runtime: Runtime, written: dict[str, int]) -> int:
    """Hand the store the events live executions pushed since the last call; returns how many.

    ``written`` maps execution id -> events already handed over (finished ones are dropped).
    """
    count = 0
    live = runtime.live
    for execution_id in [i for i in written if i not in live]:
        del written[execution_id]
    for execution_id, execution in list(live.items()):
        log_ = execution.log
        done = written.get(execution_id, 0)
        if not log_.persist or done >= len(log_.events):
            continue
        fresh = log_.events[done:]
        written[execution_id] = done + len(fresh)
        await runtime.executions.add_events(execution_id, fresh)
        count += len(fresh)
    return count


async def persist_events_periodically(
    runtime: Runtime,
    interval: float,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Every ``interval`` seconds, batch the events of running stream/async executions into the
    store, so a crash loses at most that much of their logs and other processes can follow
    them. The workflow's own ``push`` stays a list append."""
    written: dict[str, int] = {}
    while True:
        await sleep(interval)
        try:
            await persist_live_events(runtime, written)
        except NexusError as exc:
            log.warning("could not store execution events: %s", exc.message)
        except Exception:
            log.exception("could not store execution events")


def make_event_persist_ctx(nexus: Nexus) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running :func:`persist_events_periodically` (``event_persist_interval``
    seconds, default 0.25; 0 turns it off: events are then stored when an execution ends)."""

    async def event_persist_ctx(app: web.Application) -> AsyncIterator[None]:
        runtime = nexus.runtime
        interval = float(
            nexus.settings.get("event_persist_interval", EVENT_PERSIST_INTERVAL, type=float)
        )
        if runtime is None or interval <= 0:
            yield
            return
        task = asyncio.create_task(
            persist_events_periodically(runtime, interval), name="nexus-event-persist"
        )
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return event_persist_ctx


# -- retention -------------------------------------------------------------------------------------
def retention_interval(nexus: Nexus) -> float:
    """``execution_retention_interval`` seconds between purges (default 10 minutes)."""
    return float(nexus.settings.get("execution_retention_interval", RETENTION_INTERVAL, type=float))


async def purge_periodically(
    store: ExecutionStore,
    max_age: float | None,
    max_count: int | None,
    interval: float,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Purge at start and then every ``interval`` seconds until cancelled; a failing store is
    logged and retried at the next tick, never fatal."""
    while True:
        try:
            purged = await store.purge(max_age=max_age, max_count=max_count)
        except NexusError as exc:
            log.warning("execution purge failed: %s", exc.message)
        except Exception:
            log.exception("execution purge failed")
        else:
            if purged:
                log.info("purged %d executions past retention", purged)
        await sleep(interval)


def make_retention_ctx(nexus: Nexus) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context purging the runtime's execution store by age and count."""

    async def execution_retention_ctx(app: web.Application) -> AsyncIterator[None]:
        runtime = nexus.runtime
        if runtime is None:
            yield
            return
        settings = nexus.settings
        age = settings.execution_retention_age
        count = settings.execution_retention_count
        task = asyncio.create_task(
            purge_periodically(
                runtime.executions,
                age if age and age > 0 else None,
                count if count and count > 0 else None,
                retention_interval(nexus),
            ),
            name="nexus-execution-retention",
        )
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return execution_retention_ctx
