"""The playground: ``GET /playground`` and ``GET /playground/{name}`` (setting
``enable_playground``, which follows ``enable_docs`` when unset)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web import playground as web_playground

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return web_playground.playground_routes(nexus)
