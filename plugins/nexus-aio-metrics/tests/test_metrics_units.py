"""The metrics plugin's hooks and counting called directly (no server)."""

from __future__ import annotations

import gc
import re
import time
import weakref
from types import SimpleNamespace
from typing import Any

import nexus_aio_metrics
from nexus_aio_metrics import DURATION_BUCKETS, NO_WORKFLOW, Metrics, metrics_for
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)

from nexus_aio.testing import make_app


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def record(id_: str, workflow: str = "sum", status: str = "running") -> SimpleNamespace:
    return SimpleNamespace(id=id_, workflow=workflow, status=status)


def test_execution_hooks_move_the_gauge_and_count_final_statuses():
    app = make_app()
    nexus_aio_metrics.execution_started(nexus=app, execution=record("a"))
    nexus_aio_metrics.execution_started(nexus=app, execution=record("b"))
    metrics = metrics_for(app)
    assert value(metrics, "nexus_executions_in_progress", workflow="sum") == 2
    nexus_aio_metrics.execution_finished(
        nexus=app, execution=record("a", status="succeeded"), events=()
    )
    nexus_aio_metrics.execution_finished(
        nexus=app, execution=record("b", status="timed_out"), events=()
    )
    assert value(metrics, "nexus_executions_in_progress", workflow="sum") == 0
    assert value(metrics, "nexus_executions_total", workflow="sum", status="timed_out") == 1


def test_a_finish_without_a_start_does_not_push_the_gauge_below_zero():
    app = make_app()
    nexus_aio_metrics.execution_finished(
        nexus=app, execution=record("x", status="cancelled"), events=()
    )
    metrics = metrics_for(app)
    assert value(metrics, "nexus_executions_in_progress", workflow="sum") is None
    assert value(metrics, "nexus_executions_total", workflow="sum", status="cancelled") == 1


def test_observe_counts_statuses_durations_and_429s():
    metrics = Metrics(make_app())
    metrics.observe("sum", 200, 0.01)
    metrics.observe("sum", 200, None)
    metrics.observe(NO_WORKFLOW, 429, 0.002)
    assert value(metrics, "nexus_requests_total", workflow="sum", status="200") == 2
    assert value(metrics, "nexus_request_duration_seconds_count", workflow="sum") == 1
    assert value(metrics, "nexus_rate_limited_total", workflow="-") == 1


def test_each_app_has_its_own_registry_and_the_global_one_is_untouched():
    first, second = make_app(), make_app()
    assert metrics_for(first) is metrics_for(first)
    assert metrics_for(first).registry is not metrics_for(second).registry
    assert REGISTRY.get_sample_value("nexus_requests_total", {}) is None


def test_prime_creates_zero_series_for_every_registered_workflow():
    app = make_app()
    metrics = Metrics(app)
    metrics.prime()
    for name in app.workflows:
        assert value(metrics, "nexus_executions_in_progress", workflow=name) == 0
        assert value(metrics, "nexus_request_duration_seconds_count", workflow=name) == 0


def test_register_routes_and_cleanup_ctx_hooks():
    app = make_app()
    routes = nexus_aio_metrics.register_routes(nexus=app)
    assert [(r.method, r.path) for r in routes] == [("GET", "/metrics")]
    assert len(nexus_aio_metrics.register_cleanup_ctx(nexus=app)) == 1


def test_rendered_text_names_the_spec_metric():
    metrics = Metrics(make_app())
    metrics.observe("sum", 200, 0.001)
    text = metrics.render().decode()
    assert 'nexus_requests_total{status="200",workflow="sum"} 1.0' in text


# -- the exposition text, against prometheus-client's own metric classes ------------------------
def reference_text(app: Any, requests: list[tuple[str, int, float | None]], runs: list) -> str:
    """What prometheus-client's Counter, Histogram and Gauge print for the same traffic (the
    plugin used them until it counted in plain ints): the spec of ``GET /metrics``."""
    registry = CollectorRegistry()
    total = Counter(
        "nexus_requests_total",
        "HTTP requests by workflow and response status",
        ["workflow", "status"],
        registry=registry,
    )
    duration = Histogram(
        "nexus_request_duration_seconds",
        "Time from request to response headers, by workflow",
        ["workflow"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )
    in_progress = Gauge(
        "nexus_executions_in_progress",
        "Workflow executions running now",
        ["workflow"],
        registry=registry,
    )
    executions = Counter(
        "nexus_executions_total",
        "Finished workflow executions by final status",
        ["workflow", "status"],
        registry=registry,
    )
    limited = Counter(
        "nexus_rate_limited_total",
        "Requests refused with 429 by the rate limiter",
        ["workflow"],
        registry=registry,
    )
    for name in app.workflows:  # prime
        duration.labels(name)
        in_progress.labels(name)
    duration.labels(NO_WORKFLOW)
    for workflow, status, seconds in requests:
        total.labels(workflow, str(status)).inc()
        if seconds is not None:
            duration.labels(workflow).observe(seconds)
        if status == 429:
            limited.labels(workflow).inc()
    running = set()
    for event, execution in runs:
        if event == "started":
            in_progress.labels(execution.workflow).inc()
            running.add(execution.id)
        else:
            if execution.id in running:
                running.discard(execution.id)
                in_progress.labels(execution.workflow).dec()
            executions.labels(execution.workflow, execution.status).inc()
    return generate_latest(registry).decode()


def mask_created(text: str) -> str:
    """``_created`` series carry the wall-clock time their series was created: keep the line,
    drop the value."""
    return re.sub(r"^(nexus_\w+_created\{[^}]*\}) \S+$", r"\1 <time>", text, flags=re.MULTILINE)


ON_AND_AROUND_THE_BOUNDS = [
    *DURATION_BUCKETS,
    0.0,
    1e-9,
    0.0010000001,
    0.0009999999,
    0.1 + 0.2,
    59.999,
    60.0000001,
    3600.0,
    float("inf"),
]


def traffic(app: Any) -> tuple[list[tuple[str, int, float | None]], list]:
    requests: list[tuple[str, int, float | None]] = [
        ("sum", 200, seconds) for seconds in ON_AND_AROUND_THE_BOUNDS
    ]
    requests += [
        ("sum", 400, 0.002),
        (NO_WORKFLOW, 404, 0.0004),
        ("greet", 429, 0.0001),
        ("greet", 429, None),
        (NO_WORKFLOW, 429, 0.5),
        ("sum", 503, None),
        ("sum", 200, 0.025),
    ]
    runs = [
        ("started", record("a")),
        ("started", record("b", workflow="echo")),
        ("finished", record("a", status="succeeded")),
        ("finished", record("z", workflow="slow", status="cancelled")),  # never seen starting
        ("started", record("c")),
        ("finished", record("c", status="failed")),
        ("finished", record("c", status="failed")),  # a second finish moves only the counter
        ("started", record("d", workflow="echo")),
        ("finished", record("d", workflow="echo", status="timed_out")),
    ]
    return requests, runs


def test_metrics_text_is_what_prometheus_clients_own_metrics_print_for_the_same_traffic():
    app = make_app()
    requests, runs = traffic(app)
    metrics = metrics_for(app)
    metrics.prime()
    for workflow, status, seconds in requests:
        metrics.observe(workflow, status, seconds)
    for event, execution in runs:
        if event == "started":
            nexus_aio_metrics.execution_started(nexus=app, execution=execution)
        else:
            nexus_aio_metrics.execution_finished(nexus=app, execution=execution, events=())
    expected = reference_text(app, requests, runs)
    assert mask_created(metrics.render().decode()) == mask_created(expected)
    for family in ("requests", "request_duration_seconds", "executions", "rate_limited"):
        assert f"nexus_{family}_created{{" in expected  # the _created series are compared too


def test_an_observation_on_a_bucket_bound_counts_in_that_bucket():
    metrics = Metrics(make_app())
    for bound in DURATION_BUCKETS:
        metrics.observe("sum", 200, bound)
    metrics.observe("sum", 200, 0.0010000001)  # just above the first bound: the second bucket
    metrics.observe("sum", 200, 61.0)  # above every bound: only +Inf

    def bucket(le: str) -> float | None:
        return value(metrics, "nexus_request_duration_seconds_bucket", workflow="sum", le=le)

    assert bucket("0.001") == 1
    assert bucket("0.0025") == 3
    assert bucket("1.0") == 11  # the le label spelling of prometheus-client: 1 -> "1.0"
    assert bucket("60.0") == 16
    assert bucket("+Inf") == 17
    assert value(metrics, "nexus_request_duration_seconds_count", workflow="sum") == 17
    total = sum(DURATION_BUCKETS) + 0.0010000001 + 61.0
    assert value(metrics, "nexus_request_duration_seconds_sum", workflow="sum") == total


def test_created_series_follow_prometheus_clients_switch():
    metrics = Metrics(make_app())
    metrics.observe("sum", 429, 0.01)
    before = time.time()
    assert 'nexus_requests_created{status="429",workflow="sum"}' in metrics.render().decode()
    created = value(metrics, "nexus_request_duration_seconds_created", workflow="sum")
    assert created is not None and created <= before
    disable_created_metrics()
    try:
        text = metrics.render().decode()
    finally:
        enable_created_metrics()
    assert "_created" not in text
    assert 'nexus_rate_limited_total{workflow="sum"} 1.0' in text


def test_execution_hooks_of_two_apps_interleaved_count_each_in_its_own_app():
    first, second = make_app(), make_app()
    nexus_aio_metrics.execution_started(nexus=first, execution=record("a"))
    nexus_aio_metrics.execution_started(nexus=second, execution=record("b"))
    nexus_aio_metrics.execution_started(nexus=second, execution=record("c"))
    nexus_aio_metrics.execution_finished(
        nexus=first, execution=record("b", status="succeeded"), events=()
    )
    assert value(metrics_for(first), "nexus_executions_in_progress", workflow="sum") == 1
    assert value(metrics_for(second), "nexus_executions_in_progress", workflow="sum") == 2
    nexus_aio_metrics.execution_finished(
        nexus=second, execution=record("b", status="succeeded"), events=()
    )
    assert value(metrics_for(second), "nexus_executions_in_progress", workflow="sum") == 1
    key = {"workflow": "sum", "status": "succeeded"}
    assert metrics_for(first).registry.get_sample_value("nexus_executions_total", key) == 1
    assert metrics_for(second).registry.get_sample_value("nexus_executions_total", key) == 1


def test_a_discarded_app_takes_its_metrics_along():
    app = make_app()
    nexus_aio_metrics.execution_started(nexus=app, execution=record("a"))
    metrics = weakref.ref(metrics_for(app))
    del app
    gc.collect()
    assert metrics() is None
