"""Asking the ``permission_allowed`` hook before a route acts."""

from __future__ import annotations

from aiohttp import web

from nexus_aio.errors import Forbidden, Unauthorized
from nexus_aio.web.keys import ACTOR, nexus_of


async def check_permission(request: web.Request, action: str, resource: str | None = None) -> None:
    """Ask ``permission_allowed`` (only when a non-built-in plugin implements it)."""
    nexus = nexus_of(request)
    if not nexus.hooks.implemented("permission_allowed", builtin=False):
        return
    actor = request.get(ACTOR)
    if not await nexus.hooks.permission_allowed(actor, action, resource):
        if actor is None:
            raise Unauthorized("Authentication required")
        raise Forbidden(
            f"Not allowed to {action} {resource or ''}".strip(),
            details={"action": action, "resource": resource},
        )
