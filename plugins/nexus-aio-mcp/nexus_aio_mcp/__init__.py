"""nexus-aio-mcp: every workflow an MCP tool, on the same server, port and execution service.

Off until turned on: ``Nexus(enable_mcp=True)`` / ``NEXUS_ENABLE_MCP=1`` (declared here with
``feature="mcp"``). On, ``POST {api_prefix}/mcp`` speaks the MCP streamable HTTP transport through
the official SDK (``mcp`` 2.x), stateless: no ``Mcp-Session-Id``, so any worker or instance
answers any request (``serve --workers N``, several instances sharing Redis). The SDK transport is
ASGI; :mod:`nexus_aio_mcp.asgi` bridges one aiohttp request to it (no second server).

- tools: one per workflow (:mod:`nexus_aio_mcp.tools`), plus ``nexus.start``, ``nexus.status``
  and ``nexus.cancel``; each call is a ``RunRequest`` on ``nexus.service``
  (:mod:`nexus_aio_mcp.channel`);
- security: the core middleware resolves the actor (``actor_from_request``); tools the actor may
  not execute are not listed (``permission_allowed``); a refused request without credentials gets
  ``WWW-Authenticate: Bearer resource_metadata=...`` pointing at the RFC 9728 document served at
  ``{api_prefix}/.well-known/oauth-protected-resource``; an ``Origin`` that is neither the
  server's own nor allowed by CORS is refused (403); the per-workflow rate limit applies per call;
- ``python -m nexus_aio mcp --app MODULE:ATTR`` serves the same tools over stdio.

Settings (:data:`SETTINGS`): ``enable_mcp`` (False) and ``mcp_authorization_servers`` (the
authorization servers the protected-resource metadata names; none by default).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from nexus_aio import Setting, hookimpl
from nexus_aio.errors import Forbidden, Unauthorized
from nexus_aio.web.responses import error_response, json_response

from .asgi import serve_asgi
from .channel import CALLER, Caller, McpChannel
from .tools import Catalog, output_schema, tool_name

if TYPE_CHECKING:
    from nexus_aio import Nexus

__version__ = "0.1.0"
__all__ = [
    "MCP_PATH",
    "METADATA_PATH",
    "SETTINGS",
    "Catalog",
    "McpChannel",
    "OriginPolicy",
    "channel_for",
    "handle_exception",
    "nexus_active",
    "output_schema",
    "protected_resource_metadata",
    "register_cleanup_ctx",
    "register_commands",
    "register_routes",
    "register_settings",
    "serve_stdio",
    "tool_name",
]

log = logging.getLogger("nexus_aio.mcp")

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"

SETTINGS = (
    Setting("enable_mcp", bool, False, feature="mcp", help="serve the MCP channel at POST /mcp"),
    Setting(
        "mcp_authorization_servers",
        list[str],
        [],
        feature="mcp",
        help="authorization server URLs named by the RFC 9728 protected-resource metadata",
    ),
)

# The SDK transport logs one INFO line per stateless request ("Terminating session: None");
# unless the application set that logger's level itself, only its warnings are kept.
_CHATTY_LOGGERS = ("mcp.server.streamable_http",)

# One channel per app (its tool catalog and SDK server), built at app build. Weak keys: a
# discarded Nexus takes its entry with it.
_CHANNELS: weakref.WeakKeyDictionary[Any, McpChannel] = weakref.WeakKeyDictionary()
_MANAGER = web.AppKey("nexus_aio_mcp.manager", StreamableHTTPSessionManager)


def channel_for(nexus: Nexus) -> McpChannel:
    """The app's channel, built on first use (a tool-name collision raises here)."""
    channel = _CHANNELS.get(nexus)
    if channel is None:
        channel = _CHANNELS[nexus] = McpChannel(nexus)
    return channel


def nexus_active(nexus: Nexus) -> bool:
    return bool(nexus.settings.enable_mcp)


# -- Origin ------------------------------------------------------------------------------------
def _origin(value: str) -> str:
    parts = urlsplit(value.strip().rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginPolicy:
    """The transport's DNS-rebinding rule: a request with an ``Origin`` is served only when it
    is the server's own origin or one the CORS plugin allows (``enable_cors``, ``cors_origins``;
    none or ``*`` allows any)."""

    __slots__ = ("any", "origins")

    def __init__(self, settings: Any) -> None:
        allowed: list[str] = []
        cors_on = bool(getattr(settings, "enable_cors", False))
        if cors_on:
            raw = getattr(settings, "cors_origins", None) or []
            parts = raw.split(",") if isinstance(raw, str) else raw
            allowed = [str(p).strip() for p in parts if str(p).strip()]
        self.any = cors_on and (not allowed or "*" in allowed)
        self.origins = frozenset(_origin(o) for o in allowed if o != "*")

    def allows(self, request: web.Request) -> bool:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or self.any:
            return True
        seen = _origin(origin)
        return seen == f"{request.scheme}://{request.host}".lower() or seen in self.origins


# -- HTTP ---------------------------------------------------------------------------------------
def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def protected_resource_metadata(nexus: Nexus, request: web.Request) -> dict[str, Any]:
    """RFC 9728 metadata: this server's MCP endpoint as the resource, bearer tokens in the
    ``Authorization`` header, and the configured authorization servers."""
    prefix = nexus.settings.api_prefix
    data: dict[str, Any] = {
        "resource": f"{_base_url(request)}{prefix}{MCP_PATH}",
        "resource_name": "nexus_aio MCP",
        "bearer_methods_supported": ["header"],
    }
    servers = list(nexus.settings.mcp_authorization_servers or [])
    if servers:
        data["authorization_servers"] = servers
    return data


def _metadata_url(nexus: Nexus, request: web.Request) -> str:
    return f"{_base_url(request)}{nexus.settings.api_prefix}{METADATA_PATH}"


def make_mcp_handler(nexus: Nexus) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    policy = OriginPolicy(nexus.settings)

    async def mcp(request: web.Request) -> web.StreamResponse:
        if not policy.allows(request):
            raise Forbidden(
                "Origin not allowed for the MCP endpoint",
                details={"origin": request.headers.get(hdrs.ORIGIN)},
            )
        manager = request.app[_MANAGER]
        return await serve_asgi(manager.handle_request, request, {CALLER: Caller.of(request)})

    return mcp


def make_metadata_handler(nexus: Nexus) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metadata(request: web.Request) -> web.Response:
        return json_response(protected_resource_metadata(nexus, request))

    return metadata


# -- hooks --------------------------------------------------------------------------------------
@hookimpl
def register_settings(nexus: Nexus) -> tuple[Setting, ...]:
    """``enable_mcp`` and ``mcp_*``; ``feature="mcp"`` makes this plugin provide the switch."""
    return SETTINGS


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    """``POST /mcp`` and the protected-resource metadata; nothing while ``enable_mcp`` is off
    (``/mcp`` is a 404). Stateless, the transport has no use for ``GET`` (a stream for server
    messages outside any request) or ``DELETE`` (ending a session): both are 405."""
    if not nexus.settings.enable_mcp:
        return []
    channel_for(nexus)  # a tool-name collision fails the build
    handler = make_mcp_handler(nexus)
    return [
        web.post(MCP_PATH, handler),
        web.get(METADATA_PATH, make_metadata_handler(nexus), allow_head=False),
    ]


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any] | None:
    """Run the SDK's stateless session manager for the app's lifetime, in a task of its own
    (anyio's task group must be entered and left by one task; aiohttp starts and stops
    cleanup contexts from different ones)."""
    if not nexus.settings.enable_mcp:
        return None

    async def mcp_ctx(app: web.Application) -> AsyncIterator[None]:
        for name in _CHATTY_LOGGERS:
            chatty = logging.getLogger(name)
            if chatty.level == logging.NOTSET:
                chatty.setLevel(logging.WARNING)
        channel = channel_for(nexus)
        manager = StreamableHTTPSessionManager(
            channel.server,
            stateless=True,
            # Origin is checked by the handler (with the CORS settings); the Host is aiohttp's.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with manager.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(run(), name="nexus_aio_mcp.manager")
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            task.result()  # raises what stopped the manager
        app[_MANAGER] = manager
        try:
            yield
        finally:
            stop.set()
            await task

    return [mcp_ctx]


@hookimpl
def handle_exception(nexus: Nexus, request: web.Request, exception: BaseException) -> Any:
    """A request refused for lack of credentials on the MCP endpoint names the RFC 9728 metadata
    (``WWW-Authenticate: Bearer resource_metadata="..."``); the metadata itself is public, so a
    refusal of it (the auth middleware runs before any route) serves it."""
    if not isinstance(exception, Unauthorized) or not nexus.settings.enable_mcp:
        return None
    prefix = nexus.settings.api_prefix
    if request.path == prefix + METADATA_PATH and request.method == hdrs.METH_GET:
        return json_response(protected_resource_metadata(nexus, request))
    if request.path != prefix + MCP_PATH:
        return None
    response = error_response(exception)
    response.headers[hdrs.WWW_AUTHENTICATE] = (
        f'Bearer resource_metadata="{_metadata_url(nexus, request)}"'
    )
    return response


@hookimpl
def register_commands(nexus: Nexus, subparsers: argparse._SubParsersAction[Any]) -> None:
    """``python -m nexus_aio mcp --app MODULE:ATTR``: the same tools over stdio."""
    from nexus_aio.cli import add_source_args

    parser = subparsers.add_parser("mcp", help="serve the workflows as MCP tools over stdio")
    add_source_args(parser)
    parser.set_defaults(handler=_stdio_command)


def _stdio_command(args: argparse.Namespace) -> int:
    from nexus_aio.cli import load_nexus

    app, _ = load_nexus(args)
    asyncio.run(serve_stdio(app))
    return 0


async def serve_stdio(nexus: Nexus) -> None:
    """Serve the app's tools over this process's stdin/stdout until stdin closes.

    The caller is the local user (no actor, like ``python -m nexus_aio run``): permission hooks
    are asked with no actor, and no rate limit applies.
    """
    from mcp.server.stdio import stdio_server

    async with nexus:  # one service (and its stores) for the whole session
        server = McpChannel(nexus).server
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
