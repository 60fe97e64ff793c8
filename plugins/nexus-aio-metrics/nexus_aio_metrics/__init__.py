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
stamps (``REQUEST_STARTED``), so the plugin adds no middleware.

Counting is plain ints and floats in dicts, no prometheus-client metric objects (their locks and
the histogram's bucket search in Python cost more than the rest of the plugin): a request costs
a few dict lookups, a ``bisect`` and increments. Everything counts on the event loop thread (the
response signal and the execution hooks run there), so no lock is needed. A collector registered
in the app's registry turns the counts into the same families at scrape time, with the same
names, labels, bucket bounds and ``_created`` series prometheus-client's own metrics print.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import prometheus_client.metrics
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.samples import Sample
from prometheus_client.utils import INF, floatToGoString

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
# As prometheus-client's Histogram keeps them: floats, +Inf last; "le" labels in its spelling.
DURATION_BOUNDS = (*(float(bound) for bound in DURATION_BUCKETS), INF)
DURATION_LE = tuple(floatToGoString(bound) for bound in DURATION_BOUNDS)
WORKFLOW_ROUTES = ("/workflows/{name}/execute", "/workflows/{name}/schema")

REQUESTS = ("nexus_requests_total", "HTTP requests by workflow and response status")
DURATION = ("nexus_request_duration_seconds", "Time from request to response headers, by workflow")
IN_PROGRESS = ("nexus_executions_in_progress", "Workflow executions running now")
EXECUTIONS = ("nexus_executions_total", "Finished workflow executions by final status")
RATE_LIMITED = ("nexus_rate_limited_total", "Requests refused with 429 by the rate limiter")


class DurationSeries:
    """One workflow's histogram: a count per bucket (not cumulative), the sum, when created."""

    __slots__ = ("buckets", "created", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(DURATION_BOUNDS)
        self.sum = 0.0
        self.created = time.time()


class Metrics:
    """One app's counts, its registry, and the collector that prints them at scrape time."""

    def __init__(self, nexus: Nexus) -> None:
        self.workflows = nexus.workflows  # the live registry: names only become labels if known
        self.metrics_path = nexus.settings.api_prefix + METRICS_PATH
        prefix = nexus.settings.api_prefix
        self._workflow_routes = frozenset(prefix + path for path in WORKFLOW_ROUTES)
        self._names_workflow: dict[Any, bool] = {}  # route -> whether its {name} is a workflow
        # Each series: its count (or histogram) and the time it was created (``_created``), in
        # creation order, which is the order prometheus-client printed its label children in.
        self._requests: dict[tuple[str, int], int] = {}
        self._requests_created: dict[tuple[str, int], float] = {}
        self._durations: dict[str, DurationSeries] = {}
        self._in_progress: dict[str, int] = {}
        self._running: dict[str, str] = {}  # execution id -> its workflow, while it runs
        self._executions: dict[tuple[str, str], int] = {}
        self._executions_created: dict[tuple[str, str], float] = {}
        self._limited: dict[str, int] = {}
        self._limited_created: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self.registry.register(MetricsCollector(self))

    def prime(self) -> None:
        """Create the per-workflow series up front: they read 0 instead of being absent."""
        for name in self.workflows:
            self._duration_series(name)
            self._in_progress.setdefault(name, 0)
        self._duration_series(NO_WORKFLOW)

    # -- requests ---------------------------------------------------------------------------
    def workflow_label(self, request: web.Request) -> str:
        """The addressed workflow when it is registered; ``-`` otherwise (bounded labels).

        A request refused before its handler ran (429, 401) has no ``WORKFLOW_NAME`` yet: the
        workflow routes' ``{name}`` tells it then.
        """
        try:
            name: str | None = request[WORKFLOW_NAME]
        except KeyError:
            route = request.match_info.route
            names = self._names_workflow.get(route)
            if names is None:
                resource = route.resource
                canonical = resource.canonical if resource is not None else ""
                names = self._names_workflow[route] = canonical in self._workflow_routes
            name = request.match_info.get("name") if names else None
        return name if name is not None and name in self.workflows else NO_WORKFLOW

    def _duration_series(self, workflow: str) -> DurationSeries:
        series = self._durations.get(workflow)
        if series is None:
            series = self._durations[workflow] = DurationSeries()
        return series

    def observe(self, workflow: str, status: int, duration: float | None) -> None:
        key = (workflow, status)
        requests = self._requests
        count = requests.get(key)
        if count is None:
            self._requests_created[key] = time.time()
            count = 0
        requests[key] = count + 1
        if duration is not None:
            series = self._durations.get(workflow)
            if series is None:
                series = self._duration_series(workflow)
            series.sum += duration
            # The first bucket whose bound is >= the duration: one on a bound counts in that
            # bucket, as prometheus-client's ``amount <= bound`` scan counted it.
            series.buckets[bisect_left(DURATION_BOUNDS, duration)] += 1
        if status == 429:
            limited = self._limited.get(workflow)
            if limited is None:
                self._limited_created[workflow] = time.time()
                limited = 0
            self._limited[workflow] = limited + 1

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path == self.metrics_path:
            return
        try:
            duration: float | None = time.perf_counter() - request[REQUEST_STARTED]
        except KeyError:
            duration = None
        self.observe(self.workflow_label(request), response.status, duration)

    # -- executions -------------------------------------------------------------------------
    def execution_started(self, execution: Any) -> None:
        workflow = execution.workflow
        self._in_progress[workflow] = self._in_progress.get(workflow, 0) + 1
        self._running[execution.id] = workflow

    def execution_finished(self, execution: Any) -> None:
        started = self._running.pop(execution.id, None)
        if started is not None:  # only executions seen starting: the gauge never goes negative
            self._in_progress[started] -= 1
        key = (execution.workflow, execution.status)
        count = self._executions.get(key)
        if count is None:
            self._executions_created[key] = time.time()
            count = 0
        self._executions[key] = count + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)


def created_series_on() -> bool:
    """prometheus-client's switch for ``_created`` series (``PROMETHEUS_DISABLE_CREATED_SERIES``,
    ``disable_created_metrics()``), read at each scrape as its own metrics read it."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class MetricsCollector:
    """Prints one app's counts as the families prometheus-client's Counter, Histogram and Gauge
    printed: the same names, HELP, TYPE, labels, float values, series order and ``_created``."""

    def __init__(self, metrics: Metrics) -> None:
        # Weak: the metrics own the registry that holds this collector, and without a cycle a
        # discarded app's metrics go as soon as its weak-dictionary entry does.
        self.metrics = weakref.ref(metrics)

    def describe(self) -> list[Metric]:
        return [
            CounterMetricFamily(*REQUESTS, labels=("workflow", "status")),
            HistogramMetricFamily(*DURATION, labels=("workflow",)),
            GaugeMetricFamily(*IN_PROGRESS, labels=("workflow",)),
            CounterMetricFamily(*EXECUTIONS, labels=("workflow", "status")),
            CounterMetricFamily(*RATE_LIMITED, labels=("workflow",)),
        ]

    def collect(self) -> Iterator[Metric]:
        # Copies (atomic under the GIL) so that a scrape from another thread never iterates a
        # dict the loop is growing; the counts first: a series' time is stored before its count.
        metrics = self.metrics()
        if metrics is None:
            return
        created = created_series_on()

        requests = CounterMetricFamily(*REQUESTS, labels=("workflow", "status"))
        counts = metrics._requests.copy()
        requests_created = metrics._requests_created.copy()
        for (workflow, status), count in counts.items():
            requests.add_metric(
                (workflow, str(status)),
                float(count),
                requests_created[workflow, status] if created else None,
            )
        yield requests

        duration = HistogramMetricFamily(*DURATION, labels=("workflow",))
        created_name = duration.name + "_created"
        for workflow, series in metrics._durations.copy().items():
            cumulative = 0.0
            buckets = []
            for le, count in zip(DURATION_LE, series.buckets.copy(), strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            duration.add_metric((workflow,), buckets, series.sum)
            if created:
                labels = {"workflow": workflow}
                duration.samples.append(Sample(created_name, labels, series.created))
        yield duration

        in_progress = GaugeMetricFamily(*IN_PROGRESS, labels=("workflow",))
        for workflow, running in metrics._in_progress.copy().items():
            in_progress.add_metric((workflow,), float(running))
        yield in_progress

        executions = CounterMetricFamily(*EXECUTIONS, labels=("workflow", "status"))
        finished = metrics._executions.copy()
        executions_created = metrics._executions_created.copy()
        for key, count in finished.items():
            executions.add_metric(key, float(count), executions_created[key] if created else None)
        yield executions

        limited = CounterMetricFamily(*RATE_LIMITED, labels=("workflow",))
        refused = metrics._limited.copy()
        limited_created = metrics._limited_created.copy()
        for workflow, count in refused.items():
            limited.add_metric(
                (workflow,), float(count), limited_created[workflow] if created else None
            )
        yield limited


_METRICS: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()


def _no_app() -> None:
    return None


# The app whose metrics were looked up last, and its metrics: the execution hooks check this
# one identity instead of the weak dictionary (one app per process when serving). A weak
# reference, cleared when that app goes, so a discarded app still takes its metrics along.
_last: tuple[Callable[[], Any], Metrics | None] = (_no_app, None)


def _forget(ref: weakref.ref[Any]) -> None:
    global _last
    if _last[0] is ref:
        _last = (_no_app, None)


def metrics_for(nexus: Nexus) -> Metrics:
    """The app's metrics, created on first use (weak keys: a discarded app takes them along)."""
    global _last
    metrics = _METRICS.get(nexus)
    if metrics is None:
        metrics = _METRICS[nexus] = Metrics(nexus)
    _last = (weakref.ref(nexus, _forget), metrics)
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
    app, metrics = _last
    if metrics is None or app() is not nexus:
        metrics = metrics_for(nexus)
    metrics.execution_started(execution)


@hookimpl
def execution_finished(nexus: Nexus, execution: Any, events: Any) -> None:
    """(``events`` is declared, unused: an observer taking every argument is called directly.)"""
    app, metrics = _last
    if metrics is None or app() is not nexus:
        metrics = metrics_for(nexus)
    metrics.execution_finished(execution)
