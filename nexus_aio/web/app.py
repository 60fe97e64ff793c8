"""Builds the aiohttp application from a ``Nexus``: routes, middlewares, stores, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio import errors
from nexus_aio.envelope import new_request_id
from nexus_aio.errors import ConfigurationError, NexusError
from nexus_aio.execution.service import ExecutionService
from nexus_aio.logs import escape_controls
from nexus_aio.tracing import current_trace, trace_from_headers
from nexus_aio.web.access_log import access_logger
from nexus_aio.web.body import (
    BODY_FAILED,
    answer_and_close,
    body_error,
    quiet_client_errors,
    watch_body,
)
from nexus_aio.web.crossorigin import make_cross_origin_check
from nexus_aio.web.keys import (
    ACTOR,
    EXECUTION_ID,
    NEXUS,
    REQUEST_ID,
    REQUEST_STARTED,
    STREAM_RESPONSE,
    TRACE,
)
from nexus_aio.web.responses import error_response
from nexus_aio.web.workers import is_worker_child

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

log = logging.getLogger("nexus_aio")
COMPRESS_MIN_BYTES = 1024  # smaller bodies gain nothing from gzip
SHUTDOWN_GRACE = 0.5  # after shutdown_timeout: interrupted streams write their last event
MAX_REQUEST_ID_LENGTH = 128
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def nexus_error_from_http(request: web.Request, exc: web.HTTPException) -> NexusError:
    """aiohttp's own 404/405/413... as our envelope errors."""
    cls = errors.ERRORS_BY_STATUS.get(exc.status, NexusError)
    headers: dict[str, str] = {}
    if exc.status == 404:
        message = f"No route for {request.method} {request.path}"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        headers["Allow"] = allowed
        message = f"Method {request.method} not allowed for {request.path}; allowed: {allowed}"
    elif exc.status == 413:
        limit = request.app[NEXUS].settings.max_request_size
        message = f"Request body exceeds the limit of {limit} bytes"
        return errors.PayloadTooLarge(
            message, details={"max_request_size": limit}, headers={"Connection": "close"}
        )
    else:
        message = exc.text or exc.reason
    err = cls(message, headers=headers)
    if cls is NexusError:
        err.status = exc.status
        err.type = exc.reason.replace(" ", "")
    return err


def _is_request_id(value: str) -> bool:
    """A client's ``X-Request-ID`` is kept when it is 1 to 128 printable ASCII characters
    without spaces (it goes into log lines and response headers as it is)."""
    return (
        len(value) <= MAX_REQUEST_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _vary_on_encoding(response: web.StreamResponse) -> None:
    """A response compressed or not depending on ``Accept-Encoding`` says so to caches."""
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Accept-Encoding"
    elif "accept-encoding" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Accept-Encoding"


def make_core_middleware(nexus: Nexus) -> Any:
    """Request id, trace, body watch, actor, cross-origin check, error rendering and the access
    log: one middleware for all of it (each aiohttp middleware costs a wrapper call per request).
    The cross-origin check runs before the plugins' middlewares: refused requests cost no budget."""
    check_cross_origin = make_cross_origin_check(nexus)
    hooks = nexus.hooks
    resolve_actor = hooks.implemented("actor_from_request")
    custom_errors = hooks.implemented("handle_exception", builtin=False)
    access = access_logger(nexus.settings)
    compress = nexus.settings.response_compression
    body_timeout = nexus.settings.body_timeout

    @web.middleware
    async def core_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = request[REQUEST_STARTED] = time.perf_counter()
        rid = request.headers.get("X-Request-ID")
        if not rid or not _is_request_id(rid):
            rid = new_request_id()
        request[REQUEST_ID] = rid
        headers = request.headers
        trace = request[TRACE] = trace_from_headers(
            headers.get("traceparent"), headers.get("tracestate")
        )
        token = current_trace.set(trace)
        disarm = watch_body(request, body_timeout)
        try:
            if resolve_actor:
                request[ACTOR] = await hooks.actor_from_request(request)
            check_cross_origin(request)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or STREAM_RESPONSE in request:
                raise
            response = await render_error(
                request, nexus_error_from_http(request, exc), custom_errors
            )
        except asyncio.CancelledError:
            if disarm is not None:
                disarm()
            raise
        except Exception as exc:
            stream = request.get(STREAM_RESPONSE)
            if stream is not None:  # the status line is out: end the stream, never write another
                log.error(
                    "error after the stream of %s %s started",
                    request.method,
                    escape_controls(request.path),
                    exc_info=exc,
                )
                response = stream
            elif isinstance(exc, NexusError):
                response = await render_error(request, exc, custom_errors)
            elif (body_exc := body_error(request, exc)) is not None:  # a handler's own read
                response = await render_error(request, body_exc, custom_errors)
            else:
                log.error(
                    "unhandled error on %s %s (request %s)",
                    request.method,
                    escape_controls(request.path),
                    rid,
                    exc_info=exc,
                )
                response = await render_error(
                    request, errors.NexusError("Internal server error"), custom_errors, exc
                )
        if not response.prepared:
            response_headers = response.headers
            response_headers["X-Request-ID"] = rid
            response_headers["traceparent"] = trace.traceparent
            if compress and isinstance(response, web.Response):
                body = response.body
                if isinstance(body, bytes | bytearray) and len(body) > COMPRESS_MIN_BYTES:
                    response.enable_compression()
                    _vary_on_encoding(response)
        if disarm is not None:
            disarm()
            if BODY_FAILED in request and not response.prepared:
                await answer_and_close(request, response)
        if access is not None:
            access(request, response, time.perf_counter() - started, rid, trace)
        current_trace.reset(token)
        return response

    async def render_error(
        request: web.Request, exc: NexusError, custom: bool, original: BaseException | None = None
    ) -> web.StreamResponse:
        if custom:
            response = await hooks.handle_exception(request, original or exc)
            if response is not None:
                return response
        return error_response(exc, request.get(EXECUTION_ID))

    return core_middleware


def _prefixed(prefix: str, route: web.RouteDef) -> web.RouteDef:
    return web.RouteDef(route.method, prefix + route.path, route.handler, route.kwargs)


def build_app(nexus: Nexus) -> web.Application:
    settings = nexus.settings = nexus.settings.freeze()
    hooks = nexus.hooks
    hooks.resolve_request_hooks()
    quiet_client_errors()
    middlewares = [make_core_middleware(nexus), *hooks.register_middlewares()]
    # aiohttp has no header-read timeout: its keep-alive timer (armed when a connection opens and
    # after each response, fired only while no complete request head has arrived) is the one
    # that cuts off slow-header (slowloris) clients, so ``header_timeout`` sets it.
    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.max_request_size,
        # keepalive_timeout also cuts off clients that never finish their headers (aiohttp
        # has no header-read timeout); a short lingering_time stops reading a refused (413)
        # upload soon instead of for aiohttp's default 10 s.
        handler_args={"keepalive_timeout": settings.header_timeout, "lingering_time": 1.0},
    )
    app[NEXUS] = nexus
    nexus.health_components = hooks.health_components()
    seen: dict[tuple[str, str], Any] = {}
    routes = []
    for route in hooks.register_routes():
        if not isinstance(route, web.RouteDef):
            raise ConfigurationError(
                f"register_routes must return web.RouteDef items, got {route!r}"
            )
        key = (route.method, route.path)
        if key in seen:
            raise ConfigurationError(
                f"Duplicate route {route.method} {route.path}: {seen[key]!r} and {route.handler!r}"
            )
        seen[key] = route.handler
        routes.append(_prefixed(settings.api_prefix, route))
    app.add_routes(routes)
    app.cleanup_ctx.append(_service_ctx)
    app.cleanup_ctx.extend(hooks.register_cleanup_ctx())
    app.on_startup.append(_mark_started)
    app.on_shutdown.append(_begin_shutdown)
    return app


NO_AUTH_WARNING = "no authentication: every caller can run every workflow and read every execution"


async def _mark_started(app: web.Application) -> None:
    app[NEXUS].started_at = time.time()


async def _begin_shutdown(app: web.Application) -> None:
    """Stopping (the listening socket is closed by now): in-flight requests get
    ``shutdown_timeout`` seconds, then runs still going are interrupted, which ends their
    streams with an ``Interrupted`` error event while the server still waits for them."""
    nexus: Nexus = app[NEXUS]
    if nexus.service is not None:
        nexus.service.interrupt_after(nexus.settings.shutdown_timeout)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the execution service (stores, executor) for the app's lifetime; a server starting
    recovers runs a dead one left behind (with ``--workers`` the parent did that once)."""
    nexus: Nexus = app[NEXUS]
    nexus.service = await ExecutionService.open(nexus, recover=not is_worker_child())
    try:
        yield
    finally:
        service, nexus.service = nexus.service, None
        await service.close()


def serve(
    nexus: Nexus,
    host: str | None = None,
    port: int | None = None,
    sock: Any = None,
    reuse_port: bool | None = None,
    print_fn: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``shutdown_timeout`` seconds."""
    app = nexus.create_app()
    app.on_startup.append(_freeze_startup_heap)
    settings = nexus.settings
    if not settings.enable_auth:
        log.warning(NO_AUTH_WARNING)
    web.run_app(
        app,
        loop=_new_event_loop(),
        host=None if sock is not None else (host or settings.api_host),
        port=None if sock is not None else (port or settings.api_port),
        sock=sock,
        reuse_port=is_worker_child() if reuse_port is None else reuse_port,
        access_log=None,
        # aiohttp waits this long for handlers, then cancels them and waits as long again: past
        # shutdown_timeout the runs are interrupted (their streams end), so both waits are short.
        shutdown_timeout=settings.shutdown_timeout + SHUTDOWN_GRACE,
        print=print_fn,
        handle_signals=True,
    )


async def _freeze_startup_heap(app: web.Application) -> None:
    """What startup built (modules, plugins, routes, workflows, open stores) lives as long as the
    server: ``gc.freeze`` moves it out of the collector's sight, so a full collection under load
    walks what requests allocated instead of the ~120,000 objects of the startup heap (each one
    had paused the event loop for tens of milliseconds: most of the SQLite p99 at c=16)."""
    gc.collect()
    gc.freeze()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (faster sockets and callbacks), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
