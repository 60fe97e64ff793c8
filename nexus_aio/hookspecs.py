"""Hook specifications: the plugin author's reference (the guide is ``docs/plugins.md``).

Every hook receives the ``nexus`` app first; an implementation may declare fewer arguments.
Implement one with ``@hookimpl`` from ``nexus_aio``. Build-time hooks (``register_*``,
``health_components``) run once and must return their items directly: most while
``create_app()`` builds the app, but ``register_settings`` while ``Nexus(...)`` is constructed
(before ``nexus.settings`` exists) and ``register_commands`` (which adds sub-parsers and returns
None) when the CLI builds its parser.
Request-time and startup hooks (``actor_from_request``, ``permission_allowed``,
``handle_exception``, ``storage_backend``) may return a value, a callable or an awaitable, which
the core awaits. For the first-result hooks the core awaits each result in turn and keeps the
first non-None, so an async implementation answering None passes to the next plugin. A
request-time hook that only built-in plugins implement is never called per request. A misspelt
hook name fails at startup (``check_pending``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from aiohttp import web

    from nexus_aio.execution.service import ExecutionService
    from nexus_aio.nexus import Nexus
    from nexus_aio.settings import Setting

PROJECT = "nexus_aio"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_workflows(nexus: Nexus) -> Iterable[Any] | None:
    """Workflows to register, asked once before the app is built (also by the CLI ``list``).

    Return an iterable of ``(name, fn_or_Workflow)`` pairs, ``Workflow`` objects, or dicts of
    ``Nexus.register`` keyword arguments; a name already taken fails startup.
    """


@hookspec
def register_routes(nexus: Nexus) -> Iterable[web.RouteDef] | None:
    """Routes to add, asked once at app build: an iterable of ``web.RouteDef`` (``web.get(...)``).

    Paths are placed under ``api_prefix``; a duplicate (method, path) across plugins (core
    routes and custom endpoints included) fails startup with ``ConfigurationError``.
    """


@hookspec
def register_middlewares(nexus: Nexus) -> Iterable[Any] | None:
    """aiohttp middlewares, asked once at app build: an iterable of ``@web.middleware`` functions.

    They run inside the core middleware (request id, actor and error rendering already done), in
    plugin order (``tryfirst`` to be outermost); errors they raise become the envelope.
    """


@hookspec
def trusted_origins(nexus: Nexus) -> Iterable[str] | None:
    """Origins whose web pages may send state-changing requests, asked once at app build.

    Return ``scheme://host[:port]`` strings (``"*"``: every origin) or None. The core's
    cross-origin protection refuses (403) a state-changing request that a browser marks
    cross-origin unless its ``Origin`` is one of these; the CORS plugin answers its
    ``cors_origins``. A value that is not an origin fails startup.
    """


@hookspec
def register_cleanup_ctx(nexus: Nexus) -> Iterable[Any] | None:
    """Startup/shutdown pairs, asked once at app build: ``async def ctx(app): ...; yield; ...``.

    Added to ``app.cleanup_ctx`` after the core's (the runtime and stores are open when they
    start); the code after ``yield`` runs at shutdown only for contexts that started.
    """


@hookspec
def register_commands(nexus: Nexus, subparsers: argparse._SubParsersAction[Any]) -> None:
    """CLI subcommands for ``python -m nexus_aio``, added when the CLI builds its parser.

    ``nexus`` is the app the CLI runs (``--app MODULE:ATTR``, else one from the environment).
    Add each with ``subparsers.add_parser(name)`` and name its handler with
    ``parser.set_defaults(handler=fn)``; ``fn(args)`` returns the exit status (None means 0).
    A name already taken (by the core or another plugin) fails startup; returns None.
    """


@hookspec
def health_components(nexus: Nexus) -> Iterable[tuple[str, Any]] | None:
    """Named health checks, asked once at app build, run by ``/health/detailed`` per request.

    Return ``(name, check)`` pairs; ``async check()`` returns ``{"status": "healthy" |
    "degraded" | "unhealthy", ...}``. Checks run concurrently, each under a timeout; one that
    raises or times out counts as unhealthy.
    """


@hookspec
def register_settings(nexus: Nexus) -> Iterable[Setting] | None:
    """The plugin's settings, asked once while ``Nexus()`` is constructed (``nexus.settings`` does
    not exist yet): an iterable of ``nexus_aio.Setting(name, type, default, env, feature)``.

    Declared settings work like core ones (constructor keyword, ``app.api.<name>``,
    ``NEXUS_<NAME>``), are type-checked, and are read as ``nexus.settings.<name>``. ``feature="x"``
    says the plugin provides feature ``x``, the one a core switch ``enable_x`` turns on; a name
    taken by the core or declared twice fails startup.
    """


@hookspec(firstresult=True)
def actor_from_request(nexus: Nexus, request: web.Request) -> Any:
    """The authenticated actor of a request, called by the core middleware before the handler.

    Return a dict with ``id`` (stored under ``keys.ACTOR``, passed to ``permission_allowed`` and
    ``Context.actor``) or None for anonymous. The core awaits each result and keeps the first
    non-None. Raise ``Unauthorized`` for bad credentials (401 envelope).
    """


@hookspec
def permission_allowed(nexus: Nexus, actor: Any, action: str, resource: str | None) -> bool | None:
    """Whether ``actor`` may do ``action`` on ``resource``, asked before the handler acts.

    Return True, False or None (no opinion); any False denies: 401 when there is no actor, 403
    otherwise. Actions the core asks about: ``execute`` (resource: workflow name), ``read``
    (schema, plugins, executions), ``list`` (workflows), ``batch``, ``cancel``.
    """


@hookspec(firstresult=True)
def handle_exception(nexus: Nexus, request: web.Request, exception: BaseException) -> Any:
    """A response for an error raised while handling a request, or None to pass.

    Called by the core middleware with the ``NexusError`` (or, for an unexpected exception, the
    original exception). The core awaits each result and keeps the first non-None; the built-in
    ``trylast`` fallback renders the documented error envelope.
    """


@hookspec
def execution_started(nexus: Nexus, execution: Any) -> None:
    """Observer called when an execution (an ``ExecutionRecord``) starts running; returns None.

    Called on the event loop for every mode (sync, stream, async): keep it fast and never raise.
    """


@hookspec
def execution_finished(nexus: Nexus, execution: Any, events: Sequence[Any]) -> None:
    """Observer called when an execution reaches a final status; returns None.

    ``execution.status`` is succeeded, failed, timed_out, cancelled or interrupted;
    ``started_at``, ``finished_at``, ``trace_id`` and ``error`` (a failure's envelope error) are
    set. ``events`` is its event log so far (``ExecutionEvent``s: start, node, retry, progress,
    chunk... without the final ``complete``/``error``; empty for a run that never started).
    Implementations may omit the ``events`` parameter. Called on the event loop: keep it fast
    and never raise.
    """


@hookspec
def webhook_attempted(
    nexus: Nexus, delivery: Any, execution: Any, started_at: float, finished_at: float
) -> None:
    """Observer called after each completion-webhook delivery attempt; returns None.

    ``delivery`` (a ``nexus_aio.stores.webhooks.Delivery``) holds the outcome so far: ``url``,
    ``state`` (pending, delivered or failed), ``attempts``, ``last_status``, ``last_error``;
    ``execution`` is the record that was sent (None when it no longer exists); the times are
    epoch seconds. Called on the event loop: keep it fast and never raise.
    """


@hookspec(firstresult=True)
def storage_backend(nexus: Nexus, kind: str) -> Any:
    """A store for ``kind`` ("executions", "sessions", "ratelimit", "webhooks": the
    completion-webhook outbox, or "schedules"), asked once at startup.

    Return an (unopened) ``ExecutionStore``, ``SessionStore``, ``RateLimitBackend``,
    ``WebhookOutbox`` or ``ScheduleStore``, or None to pass. The core awaits each result and
    keeps the first non-None; the built-in SQLite/memory stores answer last.
    """


@hookspec(firstresult=True)
def executor(nexus: Nexus, service: ExecutionService) -> Any:
    """The ``Executor`` for async-mode runs, asked once when the execution service opens.

    Return an object implementing ``nexus_aio.execution.executor.Executor`` (``submit``,
    ``cancel``, ``follow``, ``close``) or None to pass; the core awaits each result and keeps the
    first non-None. Without one, the built-in in-process ``LocalExecutor`` runs them.
    """


@hookspec
def openapi_spec(nexus: Nexus, spec: Any) -> None:
    """Edit the apispec ``APISpec`` before it is serialised (``/openapi.json``, the CLI).

    Add security schemes, describe plugin routes, tags; returns None.
    """
