"""Session routes (``GET``/``DELETE /sessions/{session_id}``) and the periodic expiry purge.

Executions create and save sessions (see ``Runtime._execute``); these routes let a client inspect
one or end it. A session bound to an actor (auth on) is visible only to that actor: without
credentials the answer is 401, with another actor's credentials 403.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.errors import Forbidden, NexusError, SessionNotFound, Unauthorized
from nexus_aio.execution.runtime import Runtime, actor_id
from nexus_aio.stores.sessions import Session, SessionStore, validate_session_id
from nexus_aio.web.keys import ACTOR, service_of
from nexus_aio.web.responses import json_response

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

log = logging.getLogger("nexus_aio.sessions")

PURGE_INTERVAL_MAX = 60.0
PURGE_INTERVAL_MIN = 0.5


def _runtime(request: web.Request) -> Runtime:
    return service_of(request).runtime


def check_session_owner(request: web.Request, session: Session) -> None:
    """Refuse a session bound to another actor (401 when the request has no actor at all)."""
    if session.actor is None:
        return
    requester = actor_id(request.get(ACTOR))
    if requester is None:
        raise Unauthorized("Authentication required for this session")
    if requester != session.actor:
        raise Forbidden("This session belongs to another actor", details={"session_id": session.id})


async def _live_session(request: web.Request, store: SessionStore, session_id: str) -> Session:
    session = await store.get(session_id)
    if session is None:
        raise SessionNotFound(
            f"Session {session_id!r} not found or expired", details={"session_id": session_id}
        )
    check_session_owner(request, session)
    return session


async def get_session(request: web.Request) -> web.Response:
    """The session's state and times; reading does not extend its lifetime."""
    session_id = validate_session_id(request.match_info["session_id"])
    store = _runtime(request).sessions
    session = await _live_session(request, store, session_id)
    body = session.to_dict()
    body["ttl"] = store.ttl
    return json_response(body)


async def delete_session(request: web.Request) -> web.Response:
    """End a session. Waits for a running step of it, so that step cannot resurrect it."""
    session_id = validate_session_id(request.match_info["session_id"])
    runtime = _runtime(request)
    async with runtime.session_locks.hold(session_id):
        await _live_session(request, runtime.sessions, session_id)
        await runtime.sessions.delete(session_id)
    return web.Response(status=204)


def purge_interval(nexus: Nexus) -> float:
    """``session_purge_interval`` (seconds), by default half the TTL within [0.5, 60]."""
    configured = nexus.settings.session_purge_interval
    if configured is not None:
        return configured
    return min(PURGE_INTERVAL_MAX, max(PURGE_INTERVAL_MIN, nexus.settings.session_ttl / 2))


async def purge_periodically(
    store: SessionStore,
    interval: float,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Delete expired sessions every ``interval`` seconds until cancelled.

    Expired sessions are already invisible (``get`` treats them as absent); the purge is what
    keeps storage from growing with sessions nobody comes back to. A failing store is logged and
    retried at the next tick, never fatal.
    """
    while True:
        await sleep(interval)
        try:
            purged = await store.purge_expired()
        except NexusError as exc:
            log.warning("session purge failed: %s", exc.message)
        except Exception:
            log.exception("session purge failed")
        else:
            if purged:
                log.debug("purged %d expired sessions", purged)


def make_purge_ctx(nexus: Nexus) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running :func:`purge_periodically` on the runtime's session store."""

    async def session_purge_ctx(app: web.Application) -> AsyncIterator[None]:
        service = nexus.service
        if service is None:  # the core context did not start: nothing to purge
            yield
            return
        task = asyncio.create_task(
            purge_periodically(service.sessions, purge_interval(nexus)),
            name="nexus-session-purge",
        )
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return session_purge_ctx
