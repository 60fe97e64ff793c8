"""Rate limiting over real HTTP: exact headers, 429s, clients, proxies, exemptions, auth."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from nexus_aio import Nexus, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.stores.ratelimit import MemoryRateLimiter
from nexus_aio.testing import make_app
from nexus_aio.web.ratelimit import (
    ClientResolver,
    check_workflow_limit,
    installed_limiter,
)
from nexus_aio.web.responses import json_response

T0 = 1_700_000_000.0
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ClockedLimiter:
    """Supplies a ``MemoryRateLimiter`` on a fake clock through ``storage_backend``."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.limiter = MemoryRateLimiter(clock=self.clock)

    @hookimpl
    def storage_backend(self, nexus: Any, kind: str) -> Any:
        return self.limiter if kind == "ratelimit" else None


class ExtraRoutes:
    """A custom endpoint limited to 5/min (as ``@app.endpoint(rate_limit=5)`` marks its handler),
    a default-limit endpoint, a plain route, ``/metrics`` and a batch-like route."""

    @hookimpl
    def register_routes(self, nexus: Any) -> list[web.RouteDef]:
        async def limited(request: web.Request) -> web.Response:
            return json_response({"ok": True})

        async def default_limited(request: web.Request) -> web.Response:
            return json_response({"ok": True})

        async def plain(request: web.Request) -> web.Response:
            return json_response({"plain": True})

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text="requests_total 1\n")

        async def batchish(request: web.Request) -> web.Response:
            results = []
            for _ in range(int(request.query.get("n", "1"))):
                results.append(await check_workflow_limit(request, "sum"))
            return json_response(results)

        limited.nexus_rate_limit = 5  # type: ignore[attr-defined]
        default_limited.nexus_rate_limit = None  # type: ignore[attr-defined]
        routes = [
            web.get("/limited", limited),
            web.get("/default-limited", default_limited),
            web.get("/plain", plain),
            web.get("/batchish", batchish),
        ]
        if not nexus.pm.has_plugin("metrics"):  # the real metrics plugin serves it when installed
            routes.append(web.get("/metrics", metrics))
        return routes


class HeaderAuth:
    """``X-User`` names the actor; anonymous requests are refused, mallory may not execute."""

    @hookimpl
    def actor_from_request(self, nexus: Any, request: web.Request) -> Any:
        user = request.headers.get("X-User")
        return {"id": user} if user else None

    @hookimpl
    def permission_allowed(self, nexus: Any, actor: Any, action: str, resource: Any) -> Any:
        if actor is None:
            return False
        if actor["id"] == "mallory" and action == "execute":
            return False
        return None


async def _add(a: int, b: int) -> int:
    return a + b


def rate_headers(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in RATE_HEADERS if name in headers}


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.get(url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, resp.headers, body


async def execute(
    http: aiohttp.ClientSession, url: str, name: str, inputs: Any, **kw: Any
) -> tuple[int, Any, Any]:
    async with http.post(f"{url}/workflows/{name}/execute", json={"inputs": inputs}, **kw) as resp:
        return resp.status, resp.headers, await resp.json()


# -- the acceptance example -----------------------------------------------------------------------
async def test_endpoint_limit_5_counts_down_exactly_then_refuses(nexus_server, http):
    clocked = ClockedLimiter()
    url = await nexus_server(make_app(rate_limit=1000, plugins=[clocked, ExtraRoutes()]))
    for k in range(1, 6):
        status, headers, _ = await get(http, f"{url}/limited")
        assert status == 200
        assert rate_headers(headers) == {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": str(5 - k),
            "X-RateLimit-Reset": str(int(T0) + 12 * k),  # one token per 12 s
        }
        assert "Retry-After" not in headers

    status, headers, body = await get(http, f"{url}/limited")
    assert status == 429
    assert body["success"] is False
    assert body["error"]["type"] == "RateLimitExceeded"
    assert body["error"]["details"] == {"limit": 5, "retry_after": 12, "reset": int(T0) + 60}
    assert headers["Retry-After"] == "12"
    assert rate_headers(headers) == {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(T0) + 60),
    }

    clocked.clock.t = T0 + 12  # exactly Retry-After later: one token is back
    status, headers, _ = await get(http, f"{url}/limited")
    assert status == 200
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(int(T0) + 72)


async def test_app_endpoint_with_rate_limit_5(nexus_server, http):
    clocked = ClockedLimiter()
    app = make_app(plugins=[clocked])

    @app.endpoint("/api/limited", rate_limit=5)
    async def limited() -> dict:
        return {"ok": True}

    url = await nexus_server(app)
    remaining = []
    for _ in range(5):
        status, headers, body = await get(http, f"{url}/api/limited")
        assert status == 200 and body == {"ok": True}
        remaining.append(headers["X-RateLimit-Remaining"])
        assert headers["X-RateLimit-Limit"] == "5"
    assert remaining == ["4", "3", "2", "1", "0"]
    status, headers, body = await get(http, f"{url}/api/limited")
    assert status == 429 and body["error"]["type"] == "RateLimitExceeded"
    assert headers["Retry-After"] == "12"
    clocked.clock.t = T0 + 12
    status, _, _ = await get(http, f"{url}/api/limited")
    assert status == 200


async def test_request_succeeds_after_waiting_retry_after(nexus_server, http):
    app = Nexus(database=":memory:")

    @app.workflow(rate_limit=60, rate_limit_burst=1)
    async def ping() -> str:
        return "pong"

    url = await nexus_server(app)
    status, headers, _ = await execute(http, url, "ping", {})
    assert status == 200 and headers["X-RateLimit-Remaining"] == "0"
    status, headers, body = await execute(http, url, "ping", {})
    assert status == 429 and body["error"]["type"] == "RateLimitExceeded"
    assert headers["Retry-After"] == "1"
    assert int(headers["X-RateLimit-Reset"]) >= int(headers["Retry-After"])
    await asyncio.sleep(int(headers["Retry-After"]))
    status, _, body = await execute(http, url, "ping", {})
    assert status == 200 and body["result"] == "pong"


async def test_custom_endpoint_without_a_limit_gets_the_endpoint_default(nexus_server, http):
    url = await nexus_server(
        make_app(rate_limit=1000, endpoint_rate_limit=7, plugins=[ExtraRoutes()])
    )
    _, headers, _ = await get(http, f"{url}/default-limited")
    assert headers["X-RateLimit-Limit"] == "7" and headers["X-RateLimit-Remaining"] == "6"
    _, headers, _ = await get(http, f"{url}/limited")  # its own bucket
    assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "4"


# -- which bucket -----------------------------------------------------------------------------
async def test_global_limit_with_burst_covers_execute_and_other_routes(nexus_server, http):
    clocked = ClockedLimiter()
    url = await nexus_server(
        make_app(rate_limit=60, rate_limit_burst=3, plugins=[clocked, ExtraRoutes()])
    )
    status, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 2})
    assert status == 200
    assert rate_headers(headers) == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": str(int(T0) + 1),
    }
    _, headers, _ = await get(http, f"{url}/workflows")
    assert headers["X-RateLimit-Remaining"] == "1"
    _, headers, _ = await get(http, f"{url}/plain")
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(int(T0) + 3)
    status, headers, _ = await execute(http, url, "echo", {"param": "x"})
    assert status == 429 and headers["Retry-After"] == "1"
    clocked.clock.t = T0 + 1
    status, headers, _ = await execute(http, url, "echo", {"param": "x"})
    assert status == 200 and headers["X-RateLimit-Remaining"] == "0"


async def test_workflow_override_has_its_own_bucket(nexus_server, http):
    app = make_app(rate_limit=1000)
    app.register("limited_sum", _add, rate_limit=2)
    url = await nexus_server(app)
    for remaining in ("1", "0"):
        status, headers, _ = await execute(http, url, "limited_sum", {"a": 1, "b": 1})
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "2"
        assert headers["X-RateLimit-Remaining"] == remaining
    status, headers, body = await execute(http, url, "limited_sum", {"a": 1, "b": 1})
    assert status == 429 and body["error"]["type"] == "RateLimitExceeded"
    assert headers["Retry-After"] == "30"
    status, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 1})
    assert status == 200
    assert headers["X-RateLimit-Limit"] == "1000" and headers["X-RateLimit-Remaining"] == "999"


async def test_workflow_limit_alone_installs_the_limiter_only_for_that_workflow(nexus_server, http):
    app = make_app()
    app.register("limited_sum", _add, rate_limit=3)
    url = await nexus_server(app)
    _, headers, _ = await execute(http, url, "limited_sum", {"a": 1, "b": 1})
    assert headers["X-RateLimit-Limit"] == "3"
    _, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 1})
    assert not rate_headers(headers)


async def test_no_limit_configured_installs_no_middleware(nexus_server, http):
    app = make_app()
    url = await nexus_server(app)
    assert app.app is not None and installed_limiter(app.app) is None
    _, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 1})
    assert not rate_headers(headers)


async def test_health_metrics_and_docs_are_never_limited(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=1, plugins=[ExtraRoutes()]))
    for _ in range(3):
        for path in ("/health", "/health/detailed", "/metrics"):
            status, headers, _ = await get(http, url + path)
            assert status == 200, path
            assert not rate_headers(headers), path
    status, _, _ = await get(http, f"{url}/plain")
    assert status == 200
    status, _, _ = await get(http, f"{url}/plain")
    assert status == 429


async def test_unmatched_paths_spend_the_global_bucket(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=2))
    status, headers, body = await get(http, f"{url}/nope")
    assert status == 404 and body["error"]["type"] == "NotFound"
    assert headers["X-RateLimit-Remaining"] == "1"
    status, _, _ = await get(http, f"{url}/nope")
    assert status == 404
    status, _, body = await get(http, f"{url}/nope")
    assert status == 429 and body["error"]["type"] == "RateLimitExceeded"


# -- headers on every kind of response ------------------------------------------------------------
async def test_error_responses_still_carry_rate_headers(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=100))
    status, headers, body = await execute(http, url, "sum", {"a": "x", "b": 1})
    assert status == 400 and body["error"]["type"] == "ValidationError"
    assert headers["X-RateLimit-Remaining"] == "99"
    status, headers, _ = await execute(http, url, "missing", {})
    assert status == 404 and headers["X-RateLimit-Remaining"] == "98"
    status, headers, _ = await execute(http, url, "fail", {})
    assert status == 500 and headers["X-RateLimit-Remaining"] == "97"


async def test_stream_responses_carry_rate_headers(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=100))
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}, "mode": "stream"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-RateLimit-Limit"] == "100"
        assert resp.headers["X-RateLimit-Remaining"] == "99"
        text = await resp.text()
    assert "event: complete" in text


async def test_check_workflow_limit_counts_each_item(nexus_server, http):
    app = make_app(plugins=[ExtraRoutes()])
    app.workflows["sum"].rate_limit = 3
    url = await nexus_server(app)
    status, _, body = await get(http, f"{url}/batchish?n=2")
    assert status == 200
    assert [item["X-RateLimit-Remaining"] for item in body] == ["2", "1"]
    status, headers, body = await get(http, f"{url}/batchish?n=2")
    assert status == 429 and body["error"]["type"] == "RateLimitExceeded"
    assert "Retry-After" in headers
    status, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 1})
    assert status == 429  # the same bucket as a single execution


# -- who the client is ----------------------------------------------------------------------------
async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=10))
    seen = []
    for i in range(3):
        _, headers, _ = await get(
            http, f"{url}/workflows", headers={"X-Forwarded-For": f"203.0.113.{i}"}
        )
        seen.append(headers["X-RateLimit-Remaining"])
    assert seen == ["9", "8", "7"]


async def test_forwarded_for_from_trusted_proxy_names_the_client(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=10, trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"]))

    async def remaining(xff: str) -> str:
        _, headers, _ = await get(http, f"{url}/workflows", headers={"X-Forwarded-For": xff})
        return str(headers["X-RateLimit-Remaining"])

    assert await remaining("203.0.113.1") == "9"
    assert await remaining("203.0.113.2") == "9"
    # a spoofed left part is ignored: the right-most untrusted address is the client
    assert await remaining("198.51.100.7, 203.0.113.1, 10.1.2.3") == "8"
    _, headers, _ = await get(http, f"{url}/workflows")  # no header: the proxy itself
    assert headers["X-RateLimit-Remaining"] == "9"


async def test_authenticated_actor_is_the_client(nexus_server, http):
    url = await nexus_server(make_app(rate_limit=10, plugins=[HeaderAuth()]))
    _, headers, _ = await get(http, f"{url}/workflows", headers={"X-User": "alice"})
    assert headers["X-RateLimit-Remaining"] == "9"
    _, headers, _ = await get(http, f"{url}/workflows", headers={"X-User": "alice"})
    assert headers["X-RateLimit-Remaining"] == "8"
    _, headers, _ = await get(http, f"{url}/workflows", headers={"X-User": "bob"})
    assert headers["X-RateLimit-Remaining"] == "9"


async def test_requests_refused_by_auth_do_not_spend_tokens(nexus_server, http):
    app = make_app(plugins=[HeaderAuth()])
    app.workflows["sum"].rate_limit = 2
    url = await nexus_server(app)
    for _ in range(4):  # anonymous: 401 every time, never 429
        status, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 1})
        assert status == 401
        assert not rate_headers(headers)
    for _ in range(4):  # authenticated but forbidden: 403 every time
        status, _, _ = await execute(
            http, url, "sum", {"a": 1, "b": 1}, headers={"X-User": "mallory"}
        )
        assert status == 403
    status, headers, _ = await execute(http, url, "sum", {"a": 1, "b": 1}, headers={"X-User": "a"})
    assert status == 200 and headers["X-RateLimit-Remaining"] == "1"


async def test_refund_restores_the_exact_bucket(nexus_server, http):
    clocked = ClockedLimiter()
    app = make_app(plugins=[clocked, HeaderAuth()])
    app.workflows["sum"].rate_limit = 2
    url = await nexus_server(app)
    await execute(http, url, "sum", {"a": 1, "b": 1}, headers={"X-User": "mallory"})
    # the hit moved TAT one interval ahead; the refund moved it back to "full now"
    assert clocked.limiter._tat == {"wf:sum|actor:mallory": 0.0}


# -- client resolution, unit level ----------------------------------------------------------------
def test_forwarded_client_takes_the_right_most_untrusted_address():
    resolver = ClientResolver(["10.0.0.0/8", "192.0.2.1"])
    assert resolver.forwarded_client("10.0.0.1", "1.1.1.1, 2.2.2.2, 10.0.0.5") == "2.2.2.2"
    assert resolver.forwarded_client("10.0.0.1", "2.2.2.2 , 192.0.2.1") == "2.2.2.2"
    assert resolver.forwarded_client("10.0.0.1", "10.0.0.9, 10.0.0.8") == "10.0.0.9"
    assert resolver.forwarded_client("10.0.0.1", "::ffff:3.3.3.3") == "3.3.3.3"
    assert resolver.forwarded_client("10.0.0.1", "[2001:db8::1]") == "2001:db8::1"


def test_forwarded_client_stops_at_garbage_on_the_last_trusted_hop():
    resolver = ClientResolver(["10.0.0.0/8"])
    assert resolver.forwarded_client("10.0.0.1", "unknown") == "10.0.0.1"
    assert resolver.forwarded_client("10.0.0.1", "evil, 10.0.0.7") == "10.0.0.7"


def test_peer_trust_is_cached_and_bounded():
    resolver = ClientResolver(["10.0.0.0/8"])
    assert resolver.is_trusted_peer("10.1.1.1") is True
    assert resolver.is_trusted_peer("8.8.8.8") is False
    assert resolver.is_trusted_peer("not-an-ip") is False
    for i in range(10_000):
        resolver.is_trusted_peer(f"8.8.{i // 256}.{i % 256}")
    assert len(resolver._peer_trust) <= 4096


def test_bad_trusted_proxy_fails_startup():
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        make_app(trusted_proxies=["10.0.0.0/33"], rate_limit=5).create_app()


async def test_policies_follow_the_api_prefix(nexus_server, http):
    app = make_app(rate_limit=1, api_prefix="/api/v1")
    app.register("limited_sum", _add, rate_limit=3)
    url = await nexus_server(app)
    assert url.endswith("/api/v1")
    _, headers, _ = await execute(http, url, "limited_sum", {"a": 1, "b": 1})
    assert headers["X-RateLimit-Limit"] == "3"
    for _ in range(3):
        status, headers, _ = await get(http, f"{url}/health")
        assert status == 200 and not rate_headers(headers)
