"""API docs: ``GET /openapi.json`` and the Swagger UI at ``GET /docs`` (setting ``enable_docs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web import docs as web_openapi

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return web_openapi.docs_routes(nexus)
