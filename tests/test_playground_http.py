"""The playground over real HTTP: pages and assets with their content types and nothing from
another origin, the ``enable_playground`` switch (following ``enable_docs`` when unset), 404s,
and the same permission checks as the list and schema routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nexus_aio import hookimpl
from nexus_aio.settings import Settings
from nexus_aio.testing import make_app

EXTERNAL_URL = re.compile(
    r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}|@import|url\(\s*['\"]?(?:https?:)?//"
)


async def fetch(http: Any, url: str) -> tuple[int, str, str]:
    async with http.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_pages_and_assets_are_served_with_content_types_and_no_external_urls(
    nexus_server, http
):
    url = await nexus_server(make_app(api_prefix="/api"))
    status, ctype, page = await fetch(http, f"{url}/playground/sum")
    assert status == 200 and ctype == "text/html; charset=utf-8"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/api/playground/static/playground.js" in assets
    assert "/api/playground/static/playground.css" in assets
    async with http.get(f"{url}/playground/sum") as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    for asset, expected in (
        ("playground.js", "text/javascript; charset=utf-8"),
        ("playground.css", "text/css; charset=utf-8"),
    ):
        status, ctype, body = await fetch(http, f"{url}/playground/static/{asset}")
        assert (status, ctype) == (200, expected), asset
        assert not EXTERNAL_URL.search(body), (asset, EXTERNAL_URL.search(body))
    status, ctype, listing = await fetch(http, f"{url}/playground")
    assert status == 200 and ctype == "text/html; charset=utf-8"
    for html in (page, listing):
        assert not EXTERNAL_URL.search(html), EXTERNAL_URL.search(html)
        assert all(link.startswith("/api/") for link in re.findall(r'(?:src|href)="([^"]+)"', html))


async def test_the_page_embeds_the_schema_openapi_shows(nexus_server, http):
    url = await nexus_server(make_app())
    _, _, page = await fetch(http, f"{url}/playground/greet")
    embedded = re.search(
        r'<script type="application/json" id="playground-config">(.*?)</script>', page
    )
    assert embedded is not None
    config = json.loads(embedded.group(1))
    async with http.get(f"{url}/openapi.json") as resp:
        document = await resp.json()
    schemas = document["components"]["schemas"]
    request = document["paths"]["/workflows/greet/execute"]["post"]["requestBody"]
    request_schema = request["content"]["application/json"]["schema"]
    while "$ref" in request_schema:
        request_schema = schemas[request_schema["$ref"].rsplit("/", 1)[1]]
    openapi_inputs = request_schema["properties"]["inputs"]
    while "$ref" in openapi_inputs:
        openapi_inputs = schemas[openapi_inputs["$ref"].rsplit("/", 1)[1]]
    assert config["schema"] == openapi_inputs
    assert config["execute"] == "/workflows/greet/execute"


async def test_list_page_names_every_workflow(nexus_server, http):
    app = make_app()
    url = await nexus_server(app)
    _, _, listing = await fetch(http, f"{url}/playground")
    linked = re.findall(r'<a class="workflow-link" href="/playground/([^"]+)">', listing)
    assert linked == list(app.workflows)


@pytest.mark.parametrize(
    ("settings", "served"),
    [
        ({}, True),
        ({"enable_playground": False}, False),
        ({"enable_docs": False}, False),
        ({"enable_docs": False, "enable_playground": True}, True),
        ({"enable_docs": True, "enable_playground": None}, True),
    ],
)
async def test_enable_playground_switch_follows_enable_docs_when_unset(
    nexus_server, http, settings, served
):
    url = await nexus_server(make_app(**settings))
    for path in ("/playground", "/playground/sum", "/playground/static/playground.js"):
        status, _, _ = await fetch(http, url + path)
        assert status == (200 if served else 404), (settings, path)


def test_enable_playground_setting_defaults_to_none_and_reads_the_environment():
    assert Settings.build({}, {}).enable_playground is None
    assert Settings.build({}, {"NEXUS_ENABLE_PLAYGROUND": "0"}).enable_playground is False
    assert Settings.build({}, {"NEXUS_ENABLE_PLAYGROUND": "on"}).enable_playground is True


async def test_unknown_workflow_and_unknown_asset_are_404(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.get(f"{url}/playground/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["type"] == "WorkflowNotFound"
    async with http.get(f"{url}/playground/static/../../settings.py") as resp:
        assert resp.status == 404
    async with http.get(f"{url}/playground/static/list.html") as resp:
        assert resp.status == 404  # templates are not assets


async def test_playground_routes_are_not_in_the_openapi_document(nexus_server, http):
    url = await nexus_server(make_app())
    async with http.get(f"{url}/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    assert not [path for path in paths if path.startswith("/playground")]


class OnlyGreet:
    """A permission policy: list nothing, read only ``greet``."""

    __name__ = "only_greet"

    @hookimpl
    def permission_allowed(self, nexus: Any, actor: Any, action: str, resource: Any) -> bool:
        return action == "read" and resource == "greet"


async def test_pages_ask_permission_like_the_list_and_schema_routes(nexus_server, http):
    url = await nexus_server(make_app(plugins=[OnlyGreet()], load_entry_points=False))
    for path in ("/playground", "/workflows"):
        async with http.get(url + path) as resp:
            assert resp.status == 401, path  # no actor: "Authentication required"
    for path, expected in (
        ("/playground/greet", 200),
        ("/workflows/greet/schema", 200),
        ("/playground/sum", 401),
        ("/workflows/sum/schema", 401),
    ):
        async with http.get(url + path) as resp:
            assert resp.status == expected, path
