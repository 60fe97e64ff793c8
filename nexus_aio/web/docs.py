"""``GET /openapi.json`` and the Swagger UI at ``GET /docs``, served by the app itself.

The Swagger UI assets come from the installed ``swagger-ui-py`` package (Swagger UI 5, which
renders OpenAPI 3.1): no CDN, so the docs work offline and behind strict egress rules. Only the
files the page needs are served, from a fixed list, so no path from the URL reaches the disk.

The document is built on the first request (the route table is complete only once the app is
built) and kept as serialised bytes for the app's lifetime.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.errors import NotFound
from nexus_aio.openapi.document import build_openapi
from nexus_aio.openapi.routes import routes_of_app
from nexus_aio.web.responses import dumps

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = ["docs_routes", "swagger_static_dir"]

ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui-standalone-preset.js": "application/javascript",
    "favicon-16x16.png": "image/png",
    "favicon-32x32.png": "image/png",
    "oauth2-redirect.html": "text/html",
}
ASSET_CACHE = "public, max-age=86400"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nexus_aio API documentation</title>
<link rel="stylesheet" href="{static}/swagger-ui.css">
<link rel="stylesheet" href="{static}/index.css">
<link rel="icon" type="image/png" href="{static}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script src="{static}/swagger-ui-standalone-preset.js"></script>
<script>
window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{spec_url}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    oauth2RedirectUrl: window.location.origin + "{static}/oauth2-redirect.html",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  }});
}};
</script>
</body>
</html>
"""


def swagger_static_dir() -> Path:
    """``swagger_ui/static`` of the installed package, found without importing the package."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; it is a nexus_aio dependency")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _hidden(handler: Any) -> Any:
    handler.openapi_hidden = True
    return handler


def docs_routes(nexus: Nexus) -> list[web.RouteDef]:
    """The docs routes, or none with ``enable_docs=False``."""
    if not nexus.settings.enable_docs:
        return []
    prefix = nexus.settings.api_prefix
    document: bytes | None = None

    async def openapi_json(request: web.Request) -> web.Response:
        """The OpenAPI 3.1 document of this API."""
        nonlocal document
        if document is None:
            document = dumps(build_openapi(nexus, routes_of_app(request.app, prefix)))
        return web.Response(body=document, content_type="application/json")

    page = PAGE.format(static=f"{prefix}/docs/static", spec_url=f"{prefix}/openapi.json").encode()

    async def docs(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    static = swagger_static_dir()
    available = {name: static / name for name in ASSETS if (static / name).is_file()}

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["filename"]
        path = available.get(name)
        if path is None:
            raise NotFound(f"No docs asset {name!r}", details={"asset": name})
        return web.FileResponse(
            path, headers={"Content-Type": ASSETS[name], "Cache-Control": ASSET_CACHE}
        )

    return [
        web.get("/openapi.json", openapi_json, allow_head=False),
        web.get("/docs", _hidden(docs), allow_head=False),
        web.get("/docs/static/{filename}", _hidden(asset), allow_head=False),
    ]
