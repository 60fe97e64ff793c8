"""Cross-origin protection over real HTTP: what a browser marks cross-site cannot change state.

The headers are set by hand (aiohttp's client sends neither ``Origin`` nor ``Sec-Fetch-Site``),
so each request says exactly what a browser would; ``tests/test_browser_crossorigin.py`` has a
real Chromium do it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from nexus_aio import Nexus, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.security import normalize_origin
from nexus_aio.testing import make_app
from nexus_aio.web.crossorigin import CrossOriginPolicy

EVIL = "https://evil.example"
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Origin": EVIL}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def touching_app(**settings: Any) -> tuple[Nexus, list[int]]:
    """The example app plus a workflow that records each run and a state-changing endpoint."""
    app = make_app(**settings)
    runs: list[int] = []

    @app.workflow()
    async def touch(n: int = 1) -> int:
        runs.append(n)
        return len(runs)

    @app.endpoint("/notes", methods=["GET", "POST"])
    async def notes(text: str = "") -> dict:
        if text:
            runs.append(-1)
        return {"notes": len(runs)}

    return app, runs


async def call(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


def own_origin(url: str) -> str:
    return url.split("/", 3)[0] + "//" + url.split("/", 3)[2]


async def test_cross_site_execute_in_every_mode_batch_and_endpoint_writes_are_refused_with_403(
    nexus_server, http
):
    app, runs = touching_app()
    url = await nexus_server(app)
    body = {"inputs": {"n": 1}}
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/workflows/touch/execute", {"json": body}),
        ("POST", "/workflows/touch/execute?mode=stream", {"json": body}),
        ("POST", "/workflows/touch/execute?mode=async", {"json": body}),
        ("POST", "/workflows/touch/execute", {"data": "n=1"}),  # a plain HTML form's body
        ("GET", "/workflows/touch/execute?n=1", {}),
        ("GET", "/workflows/touch/execute?mode=stream&n=1", {}),
        ("GET", "/workflows/touch/execute?mode=async&n=1", {}),
        ("POST", "/workflows/batch", {"json": {"requests": [{"workflow": "touch"}]}}),
        ("POST", "/notes", {"json": {"text": "x"}}),
    ]
    for headers in (CROSS_SITE, {"Sec-Fetch-Site": "cross-site"}, {"Origin": EVIL}):
        for method, path, kw in attempts:
            status, answer = await call(http, method, f"{url}{path}", headers, **kw)
            assert status == 403, (headers, method, path, answer)
            assert answer["success"] is False
            assert answer["error"]["type"] == "Forbidden"
            assert "Cross-origin request refused" in answer["error"]["message"]
            assert answer["error"]["details"]["origin"] == headers.get("Origin")
    assert runs == []
    status, answer = await call(http, "GET", f"{url}/executions", {})
    assert answer["executions"] == []


async def test_cross_site_cancel_and_session_delete_are_refused_and_change_nothing(
    nexus_server, http
):
    app, _ = touching_app()
    url = await nexus_server(app)
    status, queued = await call(
        http,
        "POST",
        f"{url}/workflows/slow/execute?mode=async",
        {},
        json={"inputs": {"seconds": 5}},
    )
    assert status == 202
    run = f"{url}/executions/{queued['workflow_id']}"
    status, answer = await call(http, "DELETE", run, CROSS_SITE)
    assert status == 403 and answer["error"]["type"] == "Forbidden"
    status, record = await call(http, "GET", run, {})
    assert record["status"] in ("queued", "running")

    body = {"inputs": {"step": 2}, "session_id": "s-cross"}
    status, _ = await call(http, "POST", f"{url}/workflows/counter/execute", {}, json=body)
    assert status == 200
    status, answer = await call(http, "DELETE", f"{url}/sessions/s-cross", CROSS_SITE)
    assert status == 403 and answer["error"]["type"] == "Forbidden"
    status, session = await call(http, "GET", f"{url}/sessions/s-cross", {})
    assert status == 200, session

    status, cancelled = await call(http, "DELETE", run, {"Sec-Fetch-Site": "same-origin"})
    assert status == 200 and cancelled["status"] == "cancelled"


async def test_same_origin_user_initiated_and_own_origin_browser_requests_pass(nexus_server, http):
    app, runs = touching_app()
    url = await nexus_server(app)
    mine = own_origin(url)
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": mine},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": mine},  # an older browser: Origin only, compared with Host
    ):
        status, answer = await call(
            http, "POST", f"{url}/workflows/touch/execute", headers, json={"inputs": {}}
        )
        assert status == 200, (headers, answer)
        status, answer = await call(http, "GET", f"{url}/workflows/touch/execute", headers)
        assert status == 200, (headers, answer)
    assert len(runs) == 8


async def test_same_site_other_port_and_null_origins_are_refused(nexus_server, http):
    app, runs = touching_app()
    url = await nexus_server(app)
    port = int(url.rsplit(":", 1)[1])
    for headers in (
        {"Sec-Fetch-Site": "same-site", "Origin": f"http://127.0.0.1:{port + 1}"},
        {"Origin": f"http://127.0.0.1:{port + 1}"},
        {"Origin": f"http://localhost:{port}"},
        {"Origin": "null"},  # a sandboxed iframe, a file:// page
        {"Sec-Fetch-Site": "cross-site", "Origin": own_origin(url)},  # the browser's word wins
    ):
        status, answer = await call(
            http, "POST", f"{url}/workflows/touch/execute", headers, json={"inputs": {}}
        )
        assert status == 403, (headers, answer)
    assert runs == []


async def test_cross_site_reads_and_preflights_are_not_refused(nexus_server, http):
    app, runs = touching_app()
    url = await nexus_server(app)
    status, done = await call(http, "POST", f"{url}/workflows/touch/execute", {}, json={})
    assert status == 200
    for path in (
        "/workflows",
        "/workflows/touch/schema",
        "/health",
        f"/executions/{done['workflow_id']}",
        "/executions",
        "/notes",  # a custom GET endpoint follows its method: safe
    ):
        status, answer = await call(http, "GET", f"{url}{path}", CROSS_SITE)
        assert status == 200, (path, answer)
    async with http.head(f"{url}/health", headers=CROSS_SITE) as resp:
        assert resp.status == 200
    async with http.options(f"{url}/workflows/touch/execute", headers=CROSS_SITE) as resp:
        assert resp.status != 403
    assert runs == [1]


async def test_requests_without_browser_headers_keep_working_like_the_spec_curl_examples(
    nexus_server,
):
    """``curl -X POST .../execute -d '{"inputs": ...}'``, byte for byte what curl sends."""
    app, runs = touching_app()
    url = await nexus_server(app)
    host, port = url.split("//")[1].split(":")
    body = b'{"inputs": {"n": 7}}'
    request = (
        b"POST /workflows/touch/execute HTTP/1.1\r\n"
        + f"Host: {host}:{port}\r\n".encode()
        + b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n"
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )

    def exchange() -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    answer = await asyncio.to_thread(exchange)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b'"result":1' in answer
    assert runs == [7]


async def test_hook_trusted_origins(nexus_server, http):
    """A plugin's trusted origins may send state-changing requests cross-site; others may not."""

    class PartnerOrigins:
        __name__ = "partner_origins"

        @hookimpl
        def trusted_origins(self, nexus: Any) -> list[str]:
            return ["https://Partner.example/"]

    app, runs = touching_app(plugins=[PartnerOrigins()])
    url = await nexus_server(app)
    partner = {"Sec-Fetch-Site": "cross-site", "Origin": "https://partner.example"}
    status, answer = await call(http, "POST", f"{url}/workflows/touch/execute", partner, json={})
    assert status == 200, answer
    status, _ = await call(http, "POST", f"{url}/workflows/touch/execute", CROSS_SITE, json={})
    assert status == 403
    assert runs == [1]


async def test_a_star_trusted_origin_lets_every_origin_through(nexus_server, http):
    class Everyone:
        __name__ = "everyone"

        @hookimpl
        def trusted_origins(self, nexus: Any) -> list[str]:
            return ["*"]

    app, runs = touching_app(plugins=[Everyone()])
    url = await nexus_server(app)
    status, _ = await call(http, "POST", f"{url}/workflows/touch/execute", CROSS_SITE, json={})
    assert status == 200
    assert runs == [1]


def test_a_trusted_origin_that_is_not_an_origin_fails_startup():
    class Broken:
        __name__ = "broken_origins"

        @hookimpl
        def trusted_origins(self, nexus: Any) -> list[str]:
            return ["https://partner.example/path"]

    with pytest.raises(ConfigurationError, match="is not an origin"):
        make_app(plugins=[Broken()]).create_app()


async def test_refusals_are_rendered_before_rate_limits_are_spent(nexus_server, http):
    app, _ = touching_app(rate_limit=2)
    url = await nexus_server(app)
    for _ in range(5):
        status, _ = await call(http, "POST", f"{url}/workflows/touch/execute", CROSS_SITE, json={})
        assert status == 403
    status, answer = await call(http, "POST", f"{url}/workflows/touch/execute", {}, json={})
    assert status == 200, answer


def test_origin_normalisation_and_default_ports():
    assert normalize_origin("HTTPS://A.Example:8443/") == "https://a.example:8443"
    assert normalize_origin("*") == "*"
    policy = CrossOriginPolicy(["https://a.example"], "/api")
    assert policy.trusted == frozenset({"https://a.example"})
    assert policy.state_changing_gets == frozenset({"/api/workflows/{name}/execute"})
    assert not policy.any_origin and CrossOriginPolicy(["*"]).any_origin
