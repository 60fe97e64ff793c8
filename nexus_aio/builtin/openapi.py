"""API docs: ``GET /openapi.json`` and the Swagger UI at ``GET /docs`` (setting ``enable_docs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .. import web_openapi
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return web_openapi.docs_routes(nexus)
