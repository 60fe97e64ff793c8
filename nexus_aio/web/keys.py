"""Every typed key the aiohttp layer uses for app and request state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.tracing import TraceContext

if TYPE_CHECKING:
    from nexus_aio.execution.service import ExecutionService
    from nexus_aio.nexus import Nexus

NEXUS: web.AppKey[Any] = web.AppKey("nexus_aio.nexus", object)
REQUEST_ID = web.RequestKey("nexus_aio.request_id", str)
# time.perf_counter() when the core middleware first saw the request (for durations, metrics)
REQUEST_STARTED = web.RequestKey("nexus_aio.request_started", float)
EXECUTION_ID = web.RequestKey("nexus_aio.execution_id", str)
WORKFLOW_NAME = web.RequestKey("nexus_aio.workflow", str)
ACTOR: web.RequestKey[Any] = web.RequestKey("nexus_aio.actor", object)
TRACE = web.RequestKey("nexus_aio.trace", TraceContext)
RATE_HEADERS = web.RequestKey("nexus_aio.rate_headers", dict)
# The SSE response once prepared: an error after that point cannot become an HTTP status.
STREAM_RESPONSE = web.RequestKey("nexus_aio.stream_response", web.StreamResponse)


def nexus_of(request: web.Request) -> Nexus:
    nexus: Nexus = request.app[NEXUS]
    return nexus


def service_of(request: web.Request) -> ExecutionService:
    """The app's execution service (routes run only while the app serves, so it is open)."""
    service = request.app[NEXUS].service
    assert service is not None, "execution routes run only while the app serves"
    return service
