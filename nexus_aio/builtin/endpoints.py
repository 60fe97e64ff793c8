"""Custom endpoints: every ``@app.endpoint`` becomes routes through ``register_routes``.

Being an ordinary plugin means endpoint routes get the same treatment as any plugin's routes:
``api_prefix``, the duplicate-route check at startup, CORS, rate limits and auth middlewares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web.endpoints import build_endpoint_routes

if TYPE_CHECKING:
    from aiohttp import web

    from nexus_aio.nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return build_endpoint_routes(nexus)
