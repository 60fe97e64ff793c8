"""Every typed key the aiohttp layer uses for app and request state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

NEXUS: web.AppKey[Any] = web.AppKey("nexus_aio.nexus", object)
REQUEST_ID = web.RequestKey("nexus_aio.request_id", str)
# time.perf_counter() when the core middleware first saw the request (for durations, metrics)
REQUEST_STARTED = web.RequestKey("nexus_aio.request_started", float)
EXECUTION_ID = web.RequestKey("nexus_aio.execution_id", str)
WORKFLOW_NAME = web.RequestKey("nexus_aio.workflows.workflow", str)
ACTOR: web.RequestKey[Any] = web.RequestKey("nexus_aio.actor", object)
RATE_HEADERS = web.RequestKey("nexus_aio.rate_headers", dict)


def nexus_of(request: web.Request) -> Nexus:
    nexus: Nexus = request.app[NEXUS]
    return nexus


def actor_of(request: web.Request) -> Any:
    return request.get(ACTOR)
