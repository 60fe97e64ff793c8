"""Schedules: the ``/schedules`` routes and the scheduler task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web.schedules import make_scheduler_ctx, schedule_routes

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return schedule_routes()


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any]:
    return [make_scheduler_ctx(nexus)]
