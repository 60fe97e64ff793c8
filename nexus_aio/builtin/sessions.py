"""Sessions: the ``/sessions/{session_id}`` routes and the periodic purge of expired sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web import sessions as web_sessions

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return [
        web.get("/sessions/{session_id}", web_sessions.get_session, allow_head=False),
        web.delete("/sessions/{session_id}", web_sessions.delete_session),
    ]


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any]:
    return [web_sessions.make_purge_ctx(nexus)]
