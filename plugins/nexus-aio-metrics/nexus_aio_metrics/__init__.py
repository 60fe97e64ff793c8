"""nexus-aio-metrics: ``GET /metrics`` in the Prometheus text format.

Metrics (one ``CollectorRegistry`` per app, never prometheus-client's global one, so two apps
in one process, as in tests, never mix their counts):

- ``nexus_requests_total{workflow,status}``: one per HTTP response; ``workflow`` is the
  registered workflow the request addressed (execute, schema, ...) or ``-``; ``status`` is the
  HTTP status code actually sent (errors rendered by the core included).
- ``nexus_request_duration_seconds{workflow}``: histogram, from the request entering the core
  middleware to its response headers being sent (for SSE: until the stream starts).
- ``nexus_executions_in_progress{workflow}``: gauge, from the ``execution_started`` /
  ``execution_finished`` hooks (every mode).
- ``nexus_executions_total{workflow,status}``: final execution status (succeeded, failed,
  timed_out, cancelled).
- ``nexus_rate_limited_total{workflow}``: 429 responses.

``GET /metrics`` itself is not counted (a scraper would otherwise be most of the traffic), and
the rate limiter never limits it. Counting happens in aiohttp's ``on_response_prepare`` signal,
which sees the final status of every response; the start time is the one the core middleware
stamps (``REQUEST_STARTED``), so the plugin adds no middleware. Every label child is cached, so
a request costs a few dict lookups and increments.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from nexus_aio import hookimpl
from nexus_aio.web.keys import REQUEST_STARTED, WORKFLOW_NAME, nexus_of
from nexus_aio.web.permissions import check_permission

if TYPE_CHECKING:
    from nexus_aio import Nexus

__version__ = "0.1.0"
__all__ = [
    "METRICS_PATH",
    "Metrics",
    "execution_finished",
    "execution_started",
    "metrics_for",
    "register_cleanup_ctx",
    "register_routes",
]

METRICS_PATH = "/metrics"
NO_WORKFLOW = "-"
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WORKFLOW_ROUTES = ("/workflows/{name}/execute", "/workflows/{name}/schema")


class Metrics:
    """One app's registry and metrics, with label children cached for the hot path."""

    def __init__(self, nexus: Nexus) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "nexus_requests_total",
            "HTTP requests by workflow and response status",
            ["workflow", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "nexus_request_duration_seconds",
            "Time from request to response headers, by workflow",
            ["workflow"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "nexus_executions_in_progress",
            "Workflow executions running now",
            ["workflow"],
            registry=registry,
        )
        self.executions = Counter(
            "nexus_executions_total",
            "Finished workflow executions by final status",
            ["workflow", "status"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "nexus_rate_limited_total",
            "Requests refused with 429 by the rate limiter",
            ["workflow"],
            registry=registry,
        )
        self.workflows = nexus.workflows  # the live registry: names only become labels if known
        self.metrics_path = nexus.settings.api_prefix + METRICS_PATH
        prefix = nexus.settings.api_prefix
        self._workflow_routes = frozenset(prefix + path for path in WORKFLOW_ROUTES)
        self._names_workflow: dict[Any, bool] = {}  # route -> whether its {name} is a workflow
        self._request_children: dict[tuple[str, int], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._running: dict[str, Any] = {}  # execution id -> its in-progress gauge child
        self._progress_children: dict[str, Any] = {}
        self._execution_children: dict[tuple[str, str], Any] = {}
        self._limited_children: dict[str, Any] = {}

    def prime(self) -> None:
        """Create the per-workflow series up front: they read 0 instead of being absent."""
        for name in self.workflows:
            self._duration_child(name)
            self.in_progress.labels(name)
        self._duration_child(NO_WORKFLOW)

    # -- requests ---------------------------------------------------------------------------
    def workflow_label(self, request: web.Request) -> str:
        """The addressed workflow when it is registered; ``-`` otherwise (bounded labels).

        A request refused before its handler ran (429, 401) has no ``WORKFLOW_NAME`` yet: the
        workflow routes' ``{name}`` tells it then.
        """
        name = request.get(WORKFLOW_NAME)
        if name is None:
            route = request.match_info.route
            names = self._names_workflow.get(route)
            if names is None:
                resource = route.resource
                canonical = resource.canonical if resource is not None else ""
                names = self._names_workflow[route] = canonical in self._workflow_routes
            if names:
                name = request.match_info.get("name")
        return name if name is not None and name in self.workflows else NO_WORKFLOW

    def _duration_child(self, workflow: str) -> Any:
        child = self._duration_children.get(workflow)
        if child is None:
            child = self._duration_children[workflow] = self.duration.labels(workflow)
        return child

    def observe(self, workflow: str, status: int, duration: float | None) -> None:
        key = (workflow, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(workflow, str(status))
        child.inc()
        if duration is not None:
            self._duration_child(workflow).observe(duration)
        if status == 429:
            limited = self._limited_children.get(workflow)
            if limited is None:
                limited = self._limited_children[workflow] = self.rate_limited.labels(workflow)
            limited.inc()

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path == self.metrics_path:
            return
        started = request.get(REQUEST_STARTED)
        duration = None if started is None else time.perf_counter() - started
        self.observe(self.workflow_label(request), response.status, duration)

    # -- executions -------------------------------------------------------------------------
    def execution_started(self, execution: Any) -> None:
        child = self._progress_children.get(execution.workflow)
        if child is None:
            child = self.in_progress.labels(execution.workflow)
            self._progress_children[execution.workflow] = child
        child.inc()
        self._running[execution.id] = child

    def execution_finished(self, execution: Any) -> None:
        child = self._running.pop(execution.id, None)
        if child is not None:  # only executions seen starting: the gauge never goes negative
            child.dec()
        key = (execution.workflow, execution.status)
        done = self._execution_children.get(key)
        if done is None:
            done = self._execution_children[key] = self.executions.labels(*key)
        done.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


_METRICS: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()


def metrics_for(nexus: Nexus) -> Metrics:
    """The app's metrics, created on first use (weak keys: a discarded app takes them along)."""
    metrics = _METRICS.get(nexus)
    if metrics is None:
        metrics = _METRICS[nexus] = Metrics(nexus)
    return metrics


async def metrics_handler(request: web.Request) -> web.Response:
    nexus = nexus_of(request)
    await check_permission(request, "read", "metrics")
    return web.Response(
        body=metrics_for(nexus).render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


# -- hooks --------------------------------------------------------------------------------------
@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return [web.get(METRICS_PATH, metrics_handler, allow_head=False)]


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any]:
    async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
        """Hook the response signal (still open at startup) and create the known series."""
        metrics = metrics_for(nexus)
        metrics.prime()
        app.on_response_prepare.append(metrics.on_response_prepare)
        yield

    return [metrics_ctx]


@hookimpl
def execution_started(nexus: Nexus, execution: Any) -> None:
    metrics_for(nexus).execution_started(execution)


@hookimpl
def execution_finished(nexus: Nexus, execution: Any) -> None:
    metrics_for(nexus).execution_finished(execution)
