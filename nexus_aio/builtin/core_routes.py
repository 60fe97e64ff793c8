"""Core routes: execute, schema, list, health, plugins."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web import routes as web_routes


@hookimpl
def register_routes(nexus: Any) -> list[web.RouteDef]:
    execute = web_routes.make_execute_handler(nexus)
    return [
        web.post("/workflows/{name}/execute", execute),
        web.get("/workflows/{name}/execute", execute, allow_head=False),
        web.get("/workflows/{name}/schema", web_routes.schema, allow_head=False),
        web.get("/workflows", web_routes.list_workflows, allow_head=False),
        web.get("/health", web_routes.health),
        web.get("/health/detailed", web_routes.health_detailed, allow_head=False),
        web.get("/plugins", web_routes.list_plugins, allow_head=False),
    ]
