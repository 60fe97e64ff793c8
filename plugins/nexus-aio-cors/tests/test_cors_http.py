"""The CORS plugin over real HTTP: preflights, simple requests, every route, startup checks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nexus_aio_cors
import pytest
from aiohttp import web
from nexus_aio_cors import EXPOSE_HEADERS, SETTINGS, CorsSettings, install_cors

from nexus_aio import Nexus, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.settings import Settings
from nexus_aio.testing import make_app

A = "https://a.example"
B = "https://b.example"
EVIL = "https://evil.example"
SUM = {"inputs": {"a": 1, "b": 2}}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def cors_app(**settings: Any) -> Nexus:
    settings.setdefault("enable_cors", True)
    settings.setdefault("cors_origins", [A, B])
    return make_app(**settings)


def cors_settings(**kw: Any) -> Settings:
    return Settings.build(kw, environ={}, declared=SETTINGS)


def preflight_headers(origin: str, method: str = "POST", headers: str = "content-type"):
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


class PluginWithRoute:
    """A third-party plugin adding its own route."""

    @hookimpl
    def register_routes(self, nexus: Any) -> list[web.RouteDef]:
        async def hello(request: web.Request) -> web.Response:
            return web.json_response({"hello": "plugin"})

        return [web.get("/plugin-hello", hello)]


async def test_plugin_is_listed_by_get_plugins_with_version_and_hooks(nexus_server, http):
    url = await nexus_server(cors_app())
    async with http.get(f"{url}/plugins") as resp:
        plugins = (await resp.json())["plugins"]
    plugin = next(p for p in plugins if p["name"] == "cors")
    assert plugin["version"] == "0.1.0"
    assert plugin["hooks"] == ["register_cleanup_ctx", "register_settings", "trusted_origins"]
    assert plugin["builtin"] is False


async def test_preflight_from_allowed_origin_is_granted_with_configured_methods_and_headers(
    nexus_server, http
):
    url = await nexus_server(cors_app(cors_methods=["GET", "POST"]))
    headers = preflight_headers(A, "POST", "content-type, authorization")
    async with http.options(f"{url}/workflows/sum/execute", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == A
        assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
        allowed = {
            h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")
        }
        assert {"content-type", "authorization", "x-session-id"} <= allowed
        assert resp.headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in resp.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_preflight_from_another_origin_gets_no_cors_grant(nexus_server, http):
    url = await nexus_server(cors_app())
    async with http.options(f"{url}/workflows/sum/execute", headers=preflight_headers(EVIL)) as r:
        assert r.status == 403
        assert "Access-Control-Allow-Origin" not in r.headers
        body = await r.json()
        assert body["success"] is False
        assert EVIL in body["error"]["message"]


async def test_preflight_for_a_method_or_header_not_configured_is_refused(nexus_server, http):
    url = await nexus_server(cors_app(cors_methods=["GET", "POST"], cors_headers=["Content-Type"]))
    target = f"{url}/workflows/sum/execute"
    async with http.options(target, headers=preflight_headers(A, "DELETE")) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.options(target, headers=preflight_headers(A, "POST", "x-evil")) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_simple_get_and_post_from_allowed_origin_carry_allow_origin_and_vary(
    nexus_server, http
):
    url = await nexus_server(cors_app())
    async with http.get(f"{url}/workflows", headers={"Origin": B}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == B
        assert resp.headers["Vary"] == "Origin"
    async with http.post(f"{url}/workflows/sum/execute", json=SUM, headers={"Origin": A}) as resp:
        assert (await resp.json())["result"] == 3
        assert resp.headers["Access-Control-Allow-Origin"] == A
        assert "Origin" in resp.headers["Vary"]
        assert resp.headers["Access-Control-Expose-Headers"] == ", ".join(EXPOSE_HEADERS)


async def test_simple_request_from_another_origin_is_served_without_cors_grant(nexus_server, http):
    url = await nexus_server(cors_app())
    async with http.get(f"{url}/workflows", headers={"Origin": EVIL}) as resp:
        assert resp.status == 200
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.headers["Vary"] == "Origin"


async def test_errors_on_known_routes_are_readable_cross_origin(nexus_server, http):
    url = await nexus_server(cors_app())
    async with http.post(
        f"{url}/workflows/sum/execute", json={"inputs": {"a": "x"}}, headers={"Origin": A}
    ) as resp:
        assert resp.status == 400
        assert resp.headers["Access-Control-Allow-Origin"] == A


async def test_every_route_is_covered_including_plugin_routes_and_api_prefix(nexus_server, http):
    app = cors_app(api_prefix="/api/v1", plugins=[PluginWithRoute()])
    url = await nexus_server(app)
    for path in ("/health", "/health/detailed", "/plugins", "/sessions/s1", "/plugin-hello"):
        async with http.options(f"{url}{path}", headers=preflight_headers(A, "GET")) as resp:
            assert resp.status == 200, path
            assert resp.headers["Access-Control-Allow-Origin"] == A
    async with http.get(f"{url}/plugin-hello", headers={"Origin": A}) as resp:
        assert (await resp.json()) == {"hello": "plugin"}
        assert resp.headers["Access-Control-Allow-Origin"] == A
    for route in app.app.router.routes():
        assert route.resource is not None
        methods = {r.method for r in route.resource}
        assert "OPTIONS" in methods, route.resource


async def test_credentials_are_allowed_only_for_listed_origins(nexus_server, http):
    url = await nexus_server(cors_app(cors_credentials=True))
    async with http.options(f"{url}/workflows", headers=preflight_headers(A, "GET")) as resp:
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Access-Control-Allow-Origin"] == A
    async with http.get(f"{url}/workflows", headers={"Origin": A}) as resp:
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"


def test_star_origin_with_credentials_fails_at_startup():
    app = Nexus(database=":memory:", enable_cors=True, cors_origins=["*"], cors_credentials=True)
    with pytest.raises(ConfigurationError, match="credentials"):
        app.create_app()


async def test_star_origin_without_credentials_answers_star_never_the_reflected_origin(
    nexus_server, http
):
    url = await nexus_server(cors_app(cors_origins=["*"]))
    async with http.get(f"{url}/health", headers={"Origin": EVIL}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in resp.headers
        assert resp.headers["Vary"] == "Origin"


async def test_no_cors_origins_answers_star_without_credentials_and_startup_says_every_origin(
    nexus_server, http, caplog
):
    caplog.set_level(logging.WARNING, "nexus_aio.cors")
    url = await nexus_server(cors_app(cors_origins=[]))
    assert "every origin is allowed" in caplog.text
    for origin in (A, EVIL, "null"):
        headers = {**preflight_headers(origin), "Access-Control-Request-Headers": "content-type"}
        async with http.options(f"{url}/workflows/sum/execute", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in resp.headers
        async with http.post(
            f"{url}/workflows/sum/execute", json=SUM, headers={"Origin": origin}
        ) as resp:
            assert (await resp.json())["result"] == 3
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_allowed_origins_may_post_cross_site_and_other_origins_are_refused(
    nexus_server, http
):
    url = await nexus_server(cors_app())
    cross_site = {"Origin": A, "Sec-Fetch-Site": "cross-site"}
    async with http.post(f"{url}/workflows/sum/execute", json=SUM, headers=cross_site) as resp:
        assert (await resp.json())["result"] == 3
        assert resp.headers["Access-Control-Allow-Origin"] == A
    evil = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    async with http.post(f"{url}/workflows/sum/execute", json=SUM, headers=evil) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["type"] == "Forbidden"
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_spec_style_api_settings_and_environment_configure_cors(
    nexus_server, http, monkeypatch
):
    monkeypatch.setenv("NEXUS_CORS_ORIGINS", f"{A},{B}")
    monkeypatch.setenv("NEXUS_CORS_METHODS", "GET,POST")
    app = make_app()
    app.api.cors_enabled = True
    app.api.cors_headers = ["Content-Type", "Authorization"]
    url = await nexus_server(app)
    async with http.options(f"{url}/workflows", headers=preflight_headers(B, "GET")) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == B
        assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
        assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"


def test_cors_settings_are_type_checked(monkeypatch):
    with pytest.raises(ConfigurationError, match="cors_origins must be a list of strings"):
        cors_app(cors_origins=A)
    with pytest.raises(ConfigurationError, match="cors_credentials must be a boolean"):
        make_app().api.cors_credentials = "yes"
    monkeypatch.setenv("NEXUS_CORS_MAX_AGE", "a while")
    with pytest.raises(ConfigurationError, match="NEXUS_CORS_MAX_AGE='a while'"):
        make_app()


async def test_disabled_installs_nothing(nexus_server, http):
    app = make_app()
    url = await nexus_server(app)
    async with http.get(f"{url}/workflows", headers={"Origin": A}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert "Vary" not in resp.headers
    async with http.options(f"{url}/workflows", headers=preflight_headers(A, "GET")) as resp:
        assert resp.status == 405
    assert all(route.method != "OPTIONS" for route in app.app.router.routes())


async def test_preflight_needs_no_credentials_when_auth_is_on(nexus_server, http):
    key = "cors-test-api-key-0123"
    url = await nexus_server(cors_app(enable_auth=True, auth_api_keys=[key]))
    async with http.options(f"{url}/workflows/sum/execute", headers=preflight_headers(A)) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == A
    async with http.post(f"{url}/workflows/sum/execute", json=SUM, headers={"Origin": A}) as resp:
        assert resp.status == 401  # the browser can read the refusal
        assert resp.headers["Access-Control-Allow-Origin"] == A
    headers = {"Origin": A, "Authorization": f"Bearer {key}"}
    async with http.post(f"{url}/workflows/sum/execute", json=SUM, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == A


# -- the hook and helpers called directly --------------------------------------------------
def test_register_cleanup_ctx_returns_nothing_when_disabled():
    assert nexus_aio_cors.register_cleanup_ctx(Nexus(database=":memory:")) is None
    ctxs = nexus_aio_cors.register_cleanup_ctx(Nexus(database=":memory:", enable_cors=True))
    assert ctxs is not None and len(ctxs) == 1


def test_cors_settings_normalize_origins_and_refuse_non_origins():
    settings = cors_settings(cors_origins=["HTTPS://A.example/", " https://a.example"])
    assert CorsSettings.from_settings(settings).origins == ("https://a.example",)
    for bad in ("a.example", "https://a.example/path", "null"):
        with pytest.raises(ConfigurationError, match="not an origin"):
            CorsSettings.from_settings(cors_settings(cors_origins=[bad]))


def test_no_origins_means_any_origin():
    assert CorsSettings.from_settings(cors_settings()).origins == ("*",)
    assert CorsSettings.from_settings(cors_settings(cors_origins=[A, "*"])).origins == ("*",)


def test_trusted_origins_hook_answers_the_allowed_origins_only_when_enabled():
    assert nexus_aio_cors.trusted_origins(Nexus(database=":memory:")) is None
    app = Nexus(database=":memory:", enable_cors=True, cors_origins=[A, B])
    assert nexus_aio_cors.trusted_origins(app) == (A, B)


def test_install_cors_covers_routes_and_skips_resources_with_their_own_options(caplog):
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/a", handler)  # GET + HEAD
    app.router.add_post("/b/{x}", handler)
    own = app.router.add_resource("/own")
    own.add_route("GET", handler)
    own.add_route("OPTIONS", handler)
    cors = CorsSettings.from_settings(cors_settings(cors_origins=[A]))
    with caplog.at_level(logging.WARNING, "nexus_aio.cors"):
        covered = install_cors(app, cors)
    assert covered == 3
    assert "CORS not applied to GET" in caplog.text
