"""nexus-aio-otel: OpenTelemetry spans for requests, executions, DAG nodes and retries.

Off until ``enable_otel``; then every request gets a SERVER span carrying the ids of the
``traceparent`` the core answered with, every execution an INTERNAL span (child of the request
that started it, in the trace stored as the record's ``trace_id``), every DAG node a child span
of its execution and every retry an event on it. Spans leave through a batch processor (an SDK
thread), never on the request path; ``otel_exporter="memory"`` keeps them in memory for tests
(:func:`memory_exporter`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio import Setting, hookimpl
from nexus_aio.tracing import current_trace
from nexus_aio_otel.spans import EXPORTERS, Telemetry

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from nexus_aio.nexus import Nexus

__version__ = "0.1.0"
__all__ = ["SETTINGS", "memory_exporter", "telemetry_for"]

SETTINGS = (
    Setting("enable_otel", bool, False, feature="otel", help="export OpenTelemetry spans"),
    Setting(
        "otel_exporter",
        str,
        "otlp",
        feature="otel",
        help=f"where spans go: {', '.join(EXPORTERS)} (memory: tests)",
    ),
    Setting(
        "otel_endpoint",
        str | None,
        None,
        feature="otel",
        help="OTLP/HTTP base URL (…/v1/traces is appended); default: OTEL_EXPORTER_OTLP_* env",
    ),
    Setting("otel_service_name", str, "nexus-aio", feature="otel", help="service.name resource"),
)

_TELEMETRY: weakref.WeakKeyDictionary[Any, Telemetry] = weakref.WeakKeyDictionary()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def telemetry_for(nexus: Nexus) -> Telemetry | None:
    """The app's pipeline, built at app build when ``enable_otel`` is on (else None)."""
    if not nexus.settings.enable_otel:
        return None
    telemetry = _TELEMETRY.get(nexus)
    if telemetry is None:
        telemetry = _TELEMETRY[nexus] = Telemetry(nexus.settings)
    return telemetry


def memory_exporter(nexus: Nexus) -> InMemorySpanExporter:
    """The in-memory exporter of an app configured with ``otel_exporter="memory"``."""
    telemetry = telemetry_for(nexus)
    if telemetry is None or telemetry.memory is None:
        raise LookupError("enable_otel with otel_exporter='memory' keeps spans in memory")
    return telemetry.memory


@hookimpl
def register_settings(nexus: Nexus) -> Sequence[Setting]:
    return SETTINGS


@hookimpl
def register_middlewares(nexus: Nexus) -> list[Any] | None:
    telemetry = telemetry_for(nexus)
    if telemetry is None:
        return None

    @web.middleware
    async def otel_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        trace = current_trace.get()
        if trace is None:  # not under the core middleware (cannot happen when serving)
            return await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        span = telemetry.start_request_span(
            trace,
            f"{request.method} {route}",
            {"http.request.method": request.method, "url.path": request.path, "http.route": route},
        )
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR))
            span.end()

    return [otel_middleware]


@hookimpl
def execution_finished(nexus: Nexus, execution: Any, events: Any) -> None:
    telemetry = _TELEMETRY.get(nexus)
    if telemetry is not None:
        telemetry.record_execution(execution, events or (), current_trace.get())


@hookimpl
def webhook_attempted(
    nexus: Nexus, delivery: Any, execution: Any, started_at: float, finished_at: float
) -> None:
    telemetry = _TELEMETRY.get(nexus)
    if telemetry is not None:
        telemetry.record_delivery(delivery, execution, started_at, finished_at)


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any] | None:
    telemetry = telemetry_for(nexus)
    if telemetry is None:
        return None

    async def otel_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:  # flush what the batch processor still holds (a blocking call: in a thread)
            await asyncio.to_thread(telemetry.shutdown)

    return [otel_ctx]
