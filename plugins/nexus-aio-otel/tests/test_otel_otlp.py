"""A served app exports its spans over OTLP/HTTP to a real collector endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from nexus_aio.testing import ServerProcess

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A bare HTTP server that accepts OTLP/HTTP protobuf exports at /v1/traces."""
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    thread.join()
    server.server_close()


def span_names(received: list[ExportTraceServiceRequest], trace_id: str) -> set[str]:
    return {
        span.name
        for export in received
        for resource in export.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
        if span.trace_id.hex() == trace_id
    }


def test_spans_of_a_request_reach_an_otlp_collector(collector, tmp_path):
    endpoint, received = collector
    env = {
        "NEXUS_ENABLE_OTEL": "true",
        "NEXUS_OTEL_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with ServerProcess(["serve"], cwd=tmp_path, env=env) as server:
        resp = requests.post(
            f"{server.url}/workflows/sum/execute",
            json={"inputs": {"a": 1, "b": 2}},
            headers={"traceparent": f"00-{CALLER_TRACE}-b7ad6b7169203331-01"},
            timeout=10,
        )
        assert resp.status_code == 200
        deadline = time.monotonic() + 15
        wanted = {"POST /workflows/{name}/execute", "execution sum"}
        while not wanted <= span_names(received, CALLER_TRACE) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wanted <= span_names(received, CALLER_TRACE), server.read_output()[-2000:]
