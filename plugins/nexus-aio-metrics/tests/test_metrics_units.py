"""The metrics plugin's hooks and counting called directly (no server)."""

from __future__ import annotations

from types import SimpleNamespace

import nexus_aio_metrics
from nexus_aio_metrics import NO_WORKFLOW, Metrics, metrics_for
from prometheus_client import REGISTRY

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
    nexus_aio_metrics.execution_finished(nexus=app, execution=record("a", status="succeeded"))
    nexus_aio_metrics.execution_finished(nexus=app, execution=record("b", status="timed_out"))
    assert value(metrics, "nexus_executions_in_progress", workflow="sum") == 0
    assert value(metrics, "nexus_executions_total", workflow="sum", status="timed_out") == 1


def test_a_finish_without_a_start_does_not_push_the_gauge_below_zero():
    app = make_app()
    nexus_aio_metrics.execution_finished(nexus=app, execution=record("x", status="cancelled"))
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
