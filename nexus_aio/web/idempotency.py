"""``Idempotency-Key`` on execute, the HTTP side: what makes two requests the same, whose key it
is, and how a remembered (or still running) answer is sent again. The logic (claims, conflicts,
what is remembered, waiting for a claim in flight) is the execution service's
:class:`~nexus_aio.execution.idempotency.Idempotency`.

The execute handler calls :func:`handle_idempotent` only when the header is present: requests
without it pay one header lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from nexus_aio.envelope import error_envelope, new_execution_id
from nexus_aio.errors import NexusError, ValidationError
from nexus_aio.execution.idempotency import IN_FLIGHT, Outcome, worth_remembering
from nexus_aio.execution.runtime import actor_id
from nexus_aio.execution.service import ExecutionService
from nexus_aio.stores.executions import TERMINAL, IdempotencyEntry
from nexus_aio.web.keys import ACTOR, EXECUTION_ID, WORKFLOW_NAME, nexus_of, service_of
from nexus_aio.web.permissions import check_permission
from nexus_aio.web.request import read_body
from nexus_aio.web.responses import JSON_HEADERS
from nexus_aio.web.sse import stream_execution

__all__ = [
    "IDEMPOTENCY_HEADER",
    "IDEMPOTENT_PASS",
    "REPLAYED_HEADER",
    "handle_idempotent",
    "request_hash",
    "scoped_key",
]

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: Set on a request that holds its key's claim: the execution id the claim names.
IDEMPOTENT_PASS = web.RequestKey("nexus_aio.idempotent_pass", str)
#: Seconds a claim outlives the request's own timeout before a dead owner's key frees itself.
IN_FLIGHT_MARGIN = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_hash(request: web.Request, body: bytes) -> str:
    """What makes two requests "the same": method, path, query, the session (``X-Session-ID``;
    a body's ``session_id`` is part of the body), the caller, and the body as canonical JSON
    (key order and whitespace do not matter; a non-JSON body counts byte for byte). The body
    holds the inputs and the mode (or the query does)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or too deep to re-encode
        canonical = body
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query.items()))
    session = request.headers.get("X-Session-ID", "")
    caller = actor_id(request.get(ACTOR)) or ""
    digest = hashlib.sha256(
        f"{request.method}\0{request.path}\0{query}\0{session}\0{caller}\0".encode()
    )
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


def _mode(request: web.Request, body: bytes) -> str:
    """The mode the request asks for (as the execute handler reads it; invalid ones are its
    400), without validating anything."""
    mode = request.query.get("mode") if request.query_string else None
    if mode is None and body:
        with contextlib.suppress(orjson.JSONDecodeError):
            parsed = orjson.loads(body)
            if isinstance(parsed, dict):
                mode = parsed.get("mode")
    return mode if isinstance(mode, str) else "sync"


def _in_flight_for(request: web.Request, mode: str) -> float:
    """How long the request may run: its claim lasts that long plus a margin."""
    nexus = nexus_of(request)
    workflow = nexus.workflows.get(request.match_info["name"])
    timeout = nexus.settings.request_timeout
    if mode != "async" and workflow is not None and workflow.timeout:
        timeout = workflow.timeout
    return timeout + IN_FLIGHT_MARGIN


async def handle_idempotent(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler`` once per key and request; a repeat gets the original answer, marked
    ``Idempotent-Replayed: true``: a repeat of a request in flight waits for its answer (a
    stream follows the same execution from its first event). A stream's entry has an empty
    body and replays as SSE of the stored events."""
    request[WORKFLOW_NAME] = request.match_info["name"]  # for the access log of a replay
    raw_key = request.headers[IDEMPOTENCY_HEADER]
    _check_key(raw_key)
    body = await read_body(request)
    digest = request_hash(request, body)
    mode = _mode(request, body)
    in_flight_for = _in_flight_for(request, mode)
    service = service_of(request)
    idempotency = service.idempotency
    key = scoped_key(request, raw_key)
    while True:
        claim = await idempotency.claim(key, digest, raw_key, new_execution_id(), in_flight_for)
        if claim.owned:
            return await _run(request, handler, service, claim.entry, in_flight_for)
        entry: IdempotencyEntry | None = claim.entry
        if claim.entry.status == IN_FLIGHT:
            ready = _followable(service, claim.entry.execution_id) if mode == "stream" else None
            entry = await idempotency.wait(claim.entry, ready)
        if entry is not None:
            return await _replay(request, entry)


async def _run(
    request: web.Request,
    handler: Handler,
    service: ExecutionService,
    claim: IdempotencyEntry,
    in_flight_for: float,
) -> web.StreamResponse:
    """Run the request that holds the claim (as the claim's execution), then settle the claim
    with its answer or free the key."""
    idempotency = service.idempotency
    execution_id = request[IDEMPOTENT_PASS] = claim.execution_id
    try:
        response = await handler(request)
    except NexusError as exc:
        body = orjson.dumps(error_envelope(exc, execution_id))
        await idempotency.settle(claim, Outcome(exc.status, body, execution_id))
        raise
    except BaseException:
        await asyncio.shield(idempotency.release(claim))
        raise
    if isinstance(response, web.Response):
        sent = response.body if isinstance(response.body, bytes | bytearray) else b""
        await idempotency.settle(claim, Outcome(response.status, bytes(sent), execution_id))
        return response
    if not worth_remembering(response.status):
        await idempotency.release(claim)
        return response
    settled = _settle_stream(request, service, claim, in_flight_for)
    live = service.live(execution_id)
    if live is None or live.done.is_set():
        await settled
    else:  # the client left and the run goes on: the key is settled when the run ends
        idempotency.later(settled)
    return response


async def _settle_stream(
    request: web.Request, service: ExecutionService, claim: IdempotencyEntry, seconds: float
) -> None:
    """Remember a stream once its execution ended, unless it was cancelled because its client
    went away: that key stays free for a retry, which runs again."""
    record = await service.wait(claim.execution_id, seconds)
    gone = request.transport is None or request.transport.is_closing()
    if record is None or record.status not in TERMINAL or (record.status == "cancelled" and gone):
        await service.idempotency.release(claim)
    else:
        await service.idempotency.settle(claim, Outcome(200, b"", claim.execution_id))


def _followable(service: ExecutionService, execution_id: str) -> Callable[[], Awaitable[bool]]:
    """Whether a stream repeat can follow the claim's execution now: it exists as a stream and
    was not cancelled (a cancelled one is about to free its key for a fresh run)."""

    async def ready() -> bool:
        record = await service.get(execution_id, settled=False)
        return record is not None and record.mode == "stream" and record.status != "cancelled"

    return ready


async def _replay(request: web.Request, entry: IdempotencyEntry) -> web.StreamResponse:
    await check_permission(request, "execute", request.match_info.get("name"))
    request[EXECUTION_ID] = entry.execution_id
    headers = {REPLAYED_HEADER: "true"}
    if not entry.body:  # a stream: its events from the first, stored or live
        return await stream_execution(
            request, service_of(request), entry.execution_id, 0, headers, resumable=True
        )
    if entry.status == 202:
        headers["Location"] = (
            f"{nexus_of(request).settings.api_prefix}/executions/{entry.execution_id}"
        )
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        session_id = orjson.loads(entry.body).get("session_id")
        if isinstance(session_id, str):
            headers["X-Session-ID"] = session_id
    return web.Response(body=entry.body, status=entry.status, headers={**JSON_HEADERS, **headers})
