"""Hook specifications: the plugin author's reference.

Every hook receives the ``nexus`` app first. Hooks are plain functions; any of them may return an
awaitable, which the core awaits. Implement one with ``@hookimpl`` from ``nexus_aio``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from .nexus import Nexus

PROJECT = "nexus_aio"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_workflows(nexus: Nexus) -> Iterable[Any] | None:
    """Workflows to register at app build.

    Items: ``(name, fn_or_Workflow)`` pairs, ``Workflow`` objects, or dicts of ``register`` kwargs.
    """


@hookspec
def register_routes(nexus: Nexus) -> Iterable[web.RouteDef] | None:
    """Routes to add (``web.get(...)`` etc.), placed under ``api_prefix``.

    A duplicate (method, path) across plugins fails startup.
    """


@hookspec
def register_middlewares(nexus: Nexus) -> Iterable[Any] | None:
    """aiohttp middlewares (``async def mw(request, handler)``), run inside the core middleware."""


@hookspec
def register_cleanup_ctx(nexus: Nexus) -> Iterable[Any] | None:
    """``async def ctx(app): <start>; yield; <stop>`` generators added to ``app.cleanup_ctx``."""


@hookspec
def health_components(nexus: Nexus) -> Iterable[tuple[str, Any]] | None:
    """Named health checks for ``/health/detailed``.

    Items: ``(name, async check() -> {"status": "healthy" | "degraded" | "unhealthy", ...})``.
    """


@hookspec(firstresult=True)
def actor_from_request(nexus: Nexus, request: web.Request) -> Any:
    """The authenticated actor for a request (a dict with ``id``), or None.

    Stops at the first non-None result. Raise ``Unauthorized`` for bad credentials.
    """


@hookspec
def permission_allowed(nexus: Nexus, actor: Any, action: str, resource: str | None) -> bool | None:
    """True, False or None (no opinion) on ``action`` for ``resource``; any False denies.

    Actions the core asks about: ``execute`` (resource: workflow name), ``read`` (schema,
    plugins, executions), ``list`` (workflows), ``batch``, ``cancel``.
    """


@hookspec(firstresult=True)
def handle_exception(nexus: Nexus, request: web.Request, exception: BaseException) -> Any:
    """A response for an error, or None to let the next plugin answer (last: the envelope)."""


@hookspec
def execution_started(nexus: Nexus, execution: Any) -> None:
    """Observer: an execution (an ``ExecutionRecord``) has started running."""


@hookspec
def execution_finished(nexus: Nexus, execution: Any) -> None:
    """Observer: an execution reached a final status (succeeded, failed, timed_out, cancelled)."""


@hookspec(firstresult=True)
def storage_backend(nexus: Nexus, kind: str) -> Any:
    """A store for ``kind`` ("executions", "sessions" or "ratelimit"), or None.

    Stops at the first non-None result; the built-in SQLite/memory stores answer last.
    """


@hookspec
def openapi_spec(nexus: Nexus, spec: Any) -> None:
    """Edit the apispec ``APISpec`` as it is built: add security schemes, plugin routes, tags."""
