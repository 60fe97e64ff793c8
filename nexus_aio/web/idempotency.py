"""``Idempotency-Key`` on execute, the HTTP side: what makes two requests the same, whose key it
is, and how a remembered answer is sent again. The logic (locks, conflicts, what is remembered)
is the execution service's :class:`~nexus_aio.execution.idempotency.Idempotency`.

The execute handler calls :func:`handle_idempotent` only when the header is present: requests
without it pay one header lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from nexus_aio.errors import ValidationError
from nexus_aio.execution.idempotency import Outcome
from nexus_aio.execution.runtime import actor_id
from nexus_aio.stores.executions import IdempotencyEntry
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
IDEMPOTENT_PASS = web.RequestKey("nexus_aio.idempotent_pass", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_hash(request: web.Request, body: bytes) -> str:
    """What makes two requests "the same": method, path, query, ``X-Session-ID`` and the body as
    canonical JSON (key order and whitespace do not matter; a non-JSON body counts byte for
    byte)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query.items()))
    session = request.headers.get("X-Session-ID")  # the session changes the outcome too
    digest = hashlib.sha256(f"{request.method}\0{request.path}\0{query}\0{session}\0".encode())
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


async def handle_idempotent(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler`` once per key and request; a repeat gets the original answer, marked
    ``Idempotent-Replayed: true``. A stream's entry has an empty body and replays as SSE of the
    stored events."""
    request[WORKFLOW_NAME] = request.match_info["name"]  # for the access log of a replay
    raw_key = request.headers[IDEMPOTENCY_HEADER]
    _check_key(raw_key)
    digest = request_hash(request, await read_body(request))

    async def attempt() -> tuple[Outcome, web.StreamResponse]:
        request[IDEMPOTENT_PASS] = True
        response = await handler(request)
        body: Any = response.body if isinstance(response, web.Response) else b""
        if not isinstance(body, bytes | bytearray):
            body = b""
        return Outcome(response.status, bytes(body), request.get(EXECUTION_ID)), response

    entry, response = await service_of(request).idempotency.once(
        scoped_key(request, raw_key),
        digest,
        raw_key,
        attempt,
        lambda: request.get(EXECUTION_ID),
    )
    if entry is None:
        return response
    return await _replay(request, entry)


async def _replay(request: web.Request, entry: IdempotencyEntry) -> web.StreamResponse:
    await check_permission(request, "execute", request.match_info.get("name"))
    request[EXECUTION_ID] = entry.execution_id
    headers = {REPLAYED_HEADER: "true"}
    if not entry.body:  # a stream: its events, from the store (or live if still running)
        return await stream_execution(request, service_of(request), entry.execution_id, 0, headers)
    if entry.status == 202:
        headers["Location"] = (
            f"{nexus_of(request).settings.api_prefix}/executions/{entry.execution_id}"
        )
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        session_id = orjson.loads(entry.body).get("session_id")
        if isinstance(session_id, str):
            headers["X-Session-ID"] = session_id
    return web.Response(body=entry.body, status=entry.status, headers={**JSON_HEADERS, **headers})
