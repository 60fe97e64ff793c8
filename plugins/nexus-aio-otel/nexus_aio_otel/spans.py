"""The app's OpenTelemetry pipeline and the spans it records.

The core already chose the trace and span ids of a request (``nexus_aio.tracing``) and returned
them in ``traceparent``; :class:`CoreIds` makes the SDK use those ids for the request span, so a
trace viewer shows the very span the client was told about. Execution, node and retry spans are
built from the execution record and its event log when the run ends (explicit start and end
times), so nothing is added to the run itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from nexus_aio.errors import ConfigurationError
from nexus_aio.tracing import TraceContext, continue_trace

log = logging.getLogger("nexus_aio.otel")

EXPORTERS = ("otlp", "console", "memory")
_core_span: ContextVar[TraceContext | None] = ContextVar("nexus_aio_otel.core_span", default=None)


class CoreIds(IdGenerator):
    """The ids of the span being started for a request are the core's; others are random."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        trace = _core_span.get()
        return int(trace.span_id, 16) if trace is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        trace = _core_span.get()
        return int(trace.trace_id, 16) if trace is not None else self._random.generate_trace_id()


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


def _remote_parent(trace_id: str, span_id: str, flags: str = "01") -> Context:
    parent = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
    )
    return trace_api.set_span_in_context(NonRecordingSpan(parent))


class Telemetry:
    """One tracer provider per app, with the exporter the settings name."""

    def __init__(self, settings: Any) -> None:
        exporter_name = settings.otel_exporter
        if exporter_name not in EXPORTERS:
            raise ConfigurationError(
                f"otel_exporter must be one of {', '.join(EXPORTERS)}, not {exporter_name!r}"
            )
        resource = Resource.create({"service.name": settings.otel_service_name})
        self.provider = TracerProvider(resource=resource, id_generator=CoreIds())
        self.memory: InMemorySpanExporter | None = None
        processor: SpanProcessor
        if exporter_name == "memory":
            self.memory = InMemorySpanExporter()
            processor = SimpleSpanProcessor(self.memory)
        else:
            processor = BatchSpanProcessor(self._exporter(exporter_name, settings.otel_endpoint))
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("nexus_aio")

    @staticmethod
    def _exporter(name: str, endpoint: str | None) -> SpanExporter:
        if name == "console":
            return ConsoleSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if endpoint:
            return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        return OTLPSpanExporter()  # the standard OTEL_EXPORTER_OTLP_* variables

    def start_request_span(self, trace: TraceContext, name: str, attributes: dict[str, Any]) -> Any:
        """The span of one HTTP request, with the ids the core put in ``traceparent``."""
        context = (
            _remote_parent(trace.trace_id, trace.parent_id, trace.flags)
            if trace.parent_id
            else Context()
        )
        token = _core_span.set(trace)
        try:
            return self.tracer.start_span(
                name, context=context, kind=SpanKind.SERVER, attributes=attributes
            )
        finally:
            _core_span.reset(token)

    def record_execution(
        self, record: Any, events: Iterable[Any], parent: TraceContext | None
    ) -> None:
        """The span of one execution, its DAG nodes as child spans and its retries as events."""
        trace_id = getattr(record, "trace_id", None) or (parent.trace_id if parent else None)
        context = None
        if trace_id and parent is not None and parent.trace_id == trace_id:
            context = _remote_parent(trace_id, parent.span_id, parent.flags)
        start = record.started_at or record.created_at
        end = record.finished_at or start
        attributes = {
            "nexus.execution_id": record.id,
            "nexus.workflow": record.workflow,
            "nexus.mode": record.mode,
            "nexus.status": record.status,
            "nexus.attempts": getattr(record, "attempts", 1) or 1,
        }
        span = self.tracer.start_span(
            f"execution {record.workflow}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_nanos(start),
        )
        if record.status != "succeeded":
            message = (record.error or {}).get("message", record.status)
            span.set_status(Status(StatusCode.ERROR, str(message)))
        inside = trace_api.set_span_in_context(span)
        open_nodes: dict[str, float] = {}
        for event in events:
            if event.type == "node_start":
                open_nodes[str(event.data.get("node"))] = event.ts
            elif event.type == "node_complete":
                node = str(event.data.get("node"))
                began = open_nodes.pop(node, event.ts)
                self._node_span(node, began, event.ts, inside, failed=False)
            elif event.type == "retry":
                data = event.data if isinstance(event.data, dict) else {}
                span.add_event(
                    "retry",
                    {k: str(v) for k, v in data.items() if v is not None},
                    timestamp=_nanos(event.ts),
                )
        for node, began in open_nodes.items():  # started, never completed: the failing node
            self._node_span(node, began, end, inside, failed=True)
        span.end(end_time=_nanos(end))

    def _node_span(
        self, node: str, start: float, end: float, parent: Context, failed: bool
    ) -> None:
        span = self.tracer.start_span(
            f"node {node}",
            context=parent,
            attributes={"nexus.node": node},
            start_time=_nanos(start),
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, "the node did not complete"))
        span.end(end_time=_nanos(end))

    def record_delivery(
        self, delivery: Any, record: Any, started_at: float, finished_at: float
    ) -> None:
        """The CLIENT span of one webhook delivery attempt, in its execution's trace."""
        trace_id = getattr(record, "trace_id", None)
        # A root span of the run's own trace (the request that started the run has long ended).
        token = _core_span.set(continue_trace(trace_id) if trace_id else None)
        try:
            span = self._start_delivery_span(delivery, started_at)
        finally:
            _core_span.reset(token)
        if delivery.state != "delivered":
            span.set_status(Status(StatusCode.ERROR, str(delivery.last_error or "not delivered")))
        span.end(end_time=_nanos(finished_at))

    def _start_delivery_span(self, delivery: Any, started_at: float) -> Any:
        return self.tracer.start_span(
            "webhook delivery",
            context=Context(),
            kind=SpanKind.CLIENT,
            attributes={
                "nexus.execution_id": delivery.execution_id,
                "url.full": delivery.url,
                "nexus.webhook.attempt": delivery.attempts,
                "nexus.webhook.state": delivery.state,
                "http.response.status_code": delivery.last_status or 0,
            },
            start_time=_nanos(started_at),
        )

    def shutdown(self) -> None:
        self.provider.shutdown()
