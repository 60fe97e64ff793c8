"""Execution history over HTTP: look up, long-poll, list, replay events, cancel.

Every execution a client ever saw a ``workflow_id`` for is in the store (sync and stream runs too),
so these routes answer for all of them, through the execution service: runs of this process are
read live (fresher than the store), others from the store (or the executor, which may follow a
run on another process or a queue worker). The periodic storing of running executions' events
and the retention purge are cleanup contexts here too.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.errors import (
    Conflict,
    ExecutionNotFound,
    Forbidden,
    NexusError,
    Unauthorized,
    ValidationError,
)
from nexus_aio.execution.runtime import Runtime, actor_id
from nexus_aio.execution.webhooks import WEBHOOK_MODES
from nexus_aio.stores.executions import (
    LIST_VALUE_LIMIT,
    TERMINAL,
    ExecutionRecord,
    summarise,
)
from nexus_aio.web.keys import ACTOR, EXECUTION_ID, service_of
from nexus_aio.web.permissions import check_permission
from nexus_aio.web.responses import json_response
from nexus_aio.web.sse import LAST_EVENT_ID, parse_event_id, stream_execution

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus
    from nexus_aio.stores.executions import ExecutionStore

log = logging.getLogger("nexus_aio.executions")

MAX_WAIT = 60.0  # long-poll cap: beyond it proxies and clients time out anyway
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


# -- helpers ---------------------------------------------------------------------------------------
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
    """``?wait=N``: seconds to long-poll, 0 to :data:`MAX_WAIT` (the maximum the OpenAPI
    document states; beyond it a 400); 0 when absent."""
    if text is None or text == "":
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_WAIT:  # NaN fails too
        raise ValidationError(
            f"Invalid wait: {text!r} (seconds, a number from 0 to {MAX_WAIT:g})",
            details={"field": "wait", "expected": f"number 0..{MAX_WAIT:g}", "received": text},
        )
    return seconds


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


def parse_last_event_id(request: web.Request, execution_id: str | None = None) -> int:
    """The ``Last-Event-ID`` header (what a reconnecting ``EventSource`` sends), else the
    ``?last_event_id=`` parameter; 0 (from the start) when neither is given. An id is a
    non-negative ASCII integer below 2^63 (anything else is a 400 before the stream opens),
    or, as an execute stream numbers them, ``<workflow_id>:<n>`` of this execution."""
    text = request.headers.get(LAST_EVENT_ID) or request.query.get("last_event_id")
    if not text:
        return 0
    owner, seq = parse_event_id(text)
    if owner is not None and owner != execution_id:
        raise ValidationError(
            f"Invalid Last-Event-ID: {text[:80]!r} is an event id of another execution",
            details={
                "field": LAST_EVENT_ID,
                "expected": "an event id of this execution",
                "received": text[:80],
            },
        )
    return seq


async def load_record(request: web.Request) -> ExecutionRecord:
    execution_id = request.match_info["execution_id"]
    request[EXECUTION_ID] = execution_id
    record = await service_of(request).get(execution_id)
    if record is None:
        raise ExecutionNotFound(
            f"Execution {execution_id!r} not found", details={"execution_id": execution_id}
        )
    check_owner(request, record)
    return record


# -- GET /executions/{id} --------------------------------------------------------------------------
async def get_execution(request: web.Request) -> web.Response:
    """The record; ``?wait=N`` holds the request up to N seconds until the execution finishes."""
    await check_permission(request, "read", "executions")
    seconds = parse_wait(request.query.get("wait"))
    record = await load_record(request)
    if seconds > 0 and record.status not in TERMINAL:
        record = await service_of(request).wait(record.id, seconds) or record
    data = record.to_dict()
    if record.mode in WEBHOOK_MODES:  # a sync run never has a delivery: no outbox read for it
        delivery = await service_of(request).webhooks.outbox.get(record.id)
        if delivery is not None:
            data["webhook"] = delivery.to_dict()
    return json_response(data)


# -- GET /executions -------------------------------------------------------------------------------
async def list_executions(request: web.Request) -> web.Response:
    """History, newest first: ``?workflow=&status=&limit=&cursor=``.

    A page holds only executions the caller may see (the store filters by owner in its query).
    Items are bounded in size: ``inputs``, ``result`` or ``error`` above
    :data:`~nexus_aio.stores.executions.LIST_VALUE_LIMIT` bytes of JSON are null and named in
    ``"truncated"``; ``GET /executions/{id}`` has them in full.
    """
    await check_permission(request, "read", "executions")
    query = request.query
    limit = parse_limit(query.get("limit"))
    service = service_of(request)
    records, next_cursor = await service.executions.list(
        workflow=query.get("workflow") or None,
        status=query.get("status") or None,
        limit=limit,
        cursor=query.get("cursor") or None,
        visible_to=actor_id(request.get(ACTOR)),
        max_value_bytes=LIST_VALUE_LIMIT,
    )
    items = []
    for stored in records:
        live = service.live(stored.id)
        if live is not None:
            stored = summarise(live.record, LIST_VALUE_LIMIT)
        items.append(stored.to_dict())
    return json_response({"executions": items, "next_cursor": next_cursor})


# -- GET /executions/{id}/events -------------------------------------------------------------------
async def execution_events(request: web.Request) -> web.StreamResponse:
    """Replay then follow; ``Last-Event-ID`` resumes after that event, exactly once each."""
    await check_permission(request, "read", "executions")
    after_seq = parse_last_event_id(request, request.match_info["execution_id"])
    record = await load_record(request)
    return await stream_execution(request, service_of(request), record.id, after_seq)


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
    service = service_of(request)
    cancelled = await service.cancel(record.id)
    record = await service.get(record.id) or record
    if record.status in TERMINAL and record.status != "cancelled":
        raise _finished_conflict(record)  # it finished before the cancellation landed
    if not cancelled and record.status != "cancelled":
        raise Conflict(
            f"Execution {record.id!r} is not running in this server process",
            details={"execution_id": record.id, "status": record.status},
        )
    return json_response(record.to_dict())


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
        service = nexus.service
        interval = nexus.settings.event_persist_interval
        if service is None or interval <= 0:
            yield
            return
        task = asyncio.create_task(
            persist_events_periodically(service.runtime, interval), name="nexus-event-persist"
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
    return nexus.settings.execution_retention_interval


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
        service = nexus.service
        if service is None:
            yield
            return
        settings = nexus.settings
        age = settings.execution_retention_age
        count = settings.execution_retention_count
        task = asyncio.create_task(
            purge_periodically(
                service.executions,
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
