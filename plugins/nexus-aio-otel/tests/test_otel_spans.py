"""Spans exported by nexus-aio-otel, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import pytest
from nexus_aio_otel import memory_exporter
from opentelemetry.trace import SpanKind, StatusCode

from nexus_aio.errors import ConfigurationError
from nexus_aio.testing import http_receiver, make_app

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def traced_app(**settings):
    return make_app(enable_otel=True, otel_exporter="memory", **settings)


def hex_ids(span) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


async def test_the_request_span_is_the_one_named_in_the_response(nexus_server, http):
    app = traced_app()
    url = await nexus_server(app)
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    async with http.post(
        f"{url}/workflows/sum/execute",
        json={"inputs": {"a": 2, "b": 3}},
        headers={"traceparent": caller},
    ) as resp:
        assert resp.status == 200
        _, trace_id, span_id, _ = resp.headers["traceparent"].split("-")
    spans = memory_exporter(app).get_finished_spans()
    (request,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert hex_ids(request) == (trace_id, span_id) and trace_id == CALLER_TRACE
    assert f"{request.parent.span_id:016x}" == CALLER_SPAN and request.parent.is_remote
    assert request.name == "POST /workflows/{name}/execute"
    assert request.attributes["http.response.status_code"] == 200
    (execution,) = [s for s in spans if s.name == "execution sum"]
    assert execution.parent.span_id == request.context.span_id
    assert execution.attributes["nexus.status"] == "succeeded"


async def test_a_dag_run_has_a_span_per_node_under_its_execution(nexus_server, http):
    app = traced_app()
    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/text-stats/execute", json={"inputs": {"text": "a bb ccc"}}
    ) as resp:
        assert resp.status == 200, await resp.text()
    spans = memory_exporter(app).get_finished_spans()
    (execution,) = [s for s in spans if s.name == "execution text-stats"]
    nodes = [s for s in spans if s.name.startswith("node ")]
    assert len(nodes) == len(app.workflows["text-stats"].nodes)
    assert all(n.parent.span_id == execution.context.span_id for n in nodes)
    assert all(
        execution.start_time <= n.start_time <= n.end_time <= execution.end_time for n in nodes
    )


async def test_a_failed_run_and_a_5xx_are_error_spans(nexus_server, http):
    app = traced_app()
    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/fail/execute", json={"inputs": {"message": "boom"}}
    ) as resp:
        assert resp.status == 500
    spans = memory_exporter(app).get_finished_spans()
    (execution,) = [s for s in spans if s.name == "execution fail"]
    assert (
        execution.status.status_code is StatusCode.ERROR and "boom" in execution.status.description
    )
    (request,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert request.status.status_code is StatusCode.ERROR


async def test_an_async_run_is_traced_in_the_submitting_requests_trace(nexus_server, http):
    app = traced_app()
    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}, "mode": "async"}
    ) as resp:
        assert resp.status == 202
        trace_id = resp.headers["traceparent"].split("-")[1]
        execution_id = (await resp.json())["workflow_id"]
    async with http.get(f"{url}/executions/{execution_id}?wait=10") as resp:
        assert (await resp.json())["status"] == "succeeded"
    spans = memory_exporter(app).get_finished_spans()
    (execution,) = [s for s in spans if s.name == "execution sum"]
    assert hex_ids(execution)[0] == trace_id
    assert execution.attributes["nexus.execution_id"] == execution_id


async def test_off_by_default_no_spans_and_no_middleware(nexus_server, http):
    app = make_app()
    await nexus_server(app)
    with pytest.raises(LookupError):
        memory_exporter(app)


def test_an_unknown_exporter_stops_startup():
    app = make_app(enable_otel=True, otel_exporter="zipkin")
    with pytest.raises(ConfigurationError, match="otel_exporter"):
        app.create_app()


async def test_retries_are_events_on_the_execution_span(nexus_server, http):
    from nexus_aio import RetryPolicy

    app = traced_app()
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"attempt {len(calls)} failed")
        return "ok"

    app.register("flaky", flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/flaky/execute", json={"inputs": {}}) as resp:
        assert resp.status == 200, await resp.text()
    (execution,) = [
        s for s in memory_exporter(app).get_finished_spans() if s.name == "execution flaky"
    ]
    retries = [e for e in execution.events if e.name == "retry"]
    assert [e.attributes["attempt"] for e in retries] == ["1", "2"]
    assert execution.attributes["nexus.attempts"] == 3


async def test_each_webhook_delivery_attempt_is_a_client_span_in_the_runs_trace(nexus_server, http):
    import asyncio
    import base64

    from aiohttp import web

    hits = []

    async def hook(request):
        hits.append(request.headers["webhook-id"])
        return web.Response(status=500 if len(hits) == 1 else 200)

    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    app = traced_app(
        webhook_secret=secret, webhook_allowed_hosts=["127.0.0.1"], webhook_initial_delay=0.05
    )
    url = await nexus_server(app)
    async with http_receiver(hook) as hook_url:
        body = {"inputs": {"a": 1, "b": 2}, "mode": "async", "webhook": hook_url}
        async with http.post(
            f"{url}/workflows/sum/execute",
            json=body,
            headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
        ) as resp:
            assert resp.status == 202
        for _ in range(200):
            deliveries = [
                s for s in memory_exporter(app).get_finished_spans() if s.name == "webhook delivery"
            ]
            if len(deliveries) == 2:
                break
            await asyncio.sleep(0.05)
    assert [s.kind for s in deliveries] == [SpanKind.CLIENT, SpanKind.CLIENT]
    assert [s.attributes["http.response.status_code"] for s in deliveries] == [500, 200]
    assert [s.status.status_code for s in deliveries] == [StatusCode.ERROR, StatusCode.UNSET]
    assert {hex_ids(s)[0] for s in deliveries} == {CALLER_TRACE}
