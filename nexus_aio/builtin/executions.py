"""Executions: the ``/executions`` routes, the retention purge of old records, and the periodic
storing of running executions' events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web import executions as web_executions

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return [
        web.get("/executions", web_executions.list_executions, allow_head=False),
        web.get("/executions/{execution_id}", web_executions.get_execution, allow_head=False),
        web.get(
            "/executions/{execution_id}/events",
            web_executions.execution_events,
            allow_head=False,
        ),
        web.delete("/executions/{execution_id}", web_executions.cancel_execution),
    ]


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any]:
    return [
        web_executions.make_retention_ctx(nexus),
        web_executions.make_event_persist_ctx(nexus),
    ]
