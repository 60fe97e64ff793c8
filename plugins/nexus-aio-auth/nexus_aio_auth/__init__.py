"""nexus-aio-auth: bearer API keys and JWTs, per-workflow scopes, public paths.

Enabled by the core switch ``Nexus(enable_auth=True)`` / ``NEXUS_ENABLE_AUTH=1``; this plugin
provides the ``auth`` feature and declares the ``auth_*`` settings (:data:`~.config.SETTINGS`).
Installed but disabled, every hook returns at its first line and no middleware is added. Enabled,
the pieces are:

- ``actor_from_request``: ``Authorization: Bearer <token>`` -> actor (or 401 for a bad token);
- a middleware refusing requests without an actor outside the public paths (401);
- ``permission_allowed``: the scope table in :mod:`nexus_aio_auth.scopes` (403 when it says no);
- ``openapi_spec``: a ``bearerAuth`` security scheme required globally, 401/403 documented on
  every operation outside the public paths.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from nexus_aio import Setting, hookimpl
from nexus_aio.errors import Unauthorized
from nexus_aio.openapi import add_responses, error_responses, operations
from nexus_aio.web.keys import ACTOR

from .config import SETTINGS, AuthConfig
from .scopes import actor_allowed, scope_allows
from .tokens import Authenticator, api_key_actor, bearer_token, jwt_actor

if TYPE_CHECKING:
    from nexus_aio import Nexus

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__version__ = "0.1.0"
__all__ = [
    "SETTINGS",
    "AuthConfig",
    "Authenticator",
    "actor_allowed",
    "actor_from_request",
    "api_key_actor",
    "authenticator_for",
    "bearer_token",
    "jwt_actor",
    "make_auth_middleware",
    "openapi_spec",
    "permission_allowed",
    "public_path_matcher",
    "register_middlewares",
    "register_settings",
    "scope_allows",
]

log = logging.getLogger("nexus_aio.auth")
SECURITY_SCHEME = "bearerAuth"

# One authenticator per app, rebuilt if the app's settings object changes (it is frozen and
# replaced once, at create_app()). Weak keys: a discarded Nexus takes its entry with it.
_AUTHENTICATORS: weakref.WeakKeyDictionary[Any, tuple[Any, Authenticator]] = (
    weakref.WeakKeyDictionary()
)


def authenticator_for(nexus: Nexus) -> Authenticator:
    """The app's authenticator, built (and its configuration validated) on first use."""
    settings = nexus.settings
    cached = _AUTHENTICATORS.get(nexus)
    if cached is None or cached[0] is not settings:
        cached = (settings, Authenticator(AuthConfig.from_settings(settings)))
        _AUTHENTICATORS[nexus] = cached
    return cached[1]


def nexus_active(nexus: Nexus) -> bool:
    """Switched off, the plugin is left out of the per-request hooks (the core asks at build)."""
    return bool(nexus.settings.enable_auth)


@hookimpl
def register_settings(nexus: Nexus) -> tuple[Setting, ...]:
    """The ``auth_*`` settings; declaring them with ``feature="auth"`` provides ``enable_auth``."""
    return SETTINGS


@hookimpl
def actor_from_request(nexus: Nexus, request: web.Request) -> dict[str, Any] | None:
    """The bearer token's actor; None without one; 401 (``Unauthorized``) for a bad one."""
    if not nexus.settings.enable_auth:
        return None
    return authenticator_for(nexus).authenticate(request.headers.get(hdrs.AUTHORIZATION))


@hookimpl
def permission_allowed(nexus: Nexus, actor: Any, action: str, resource: str | None) -> bool | None:
    """The scope policy for authenticated actors; no opinion when disabled or anonymous.

    Anonymous requests only reach a handler on a public path (the middleware refuses the
    rest), and a path made public is open for whatever it does.
    """
    if actor is None or not nexus.settings.enable_auth:
        return None
    return actor_allowed(actor, action, resource)


@hookimpl(tryfirst=True)
def register_middlewares(nexus: Nexus) -> list[Any] | None:
    """The refusal middleware, outermost of the plugin middlewares (before rate limiting)."""
    if not nexus.settings.enable_auth:
        return None
    config = authenticator_for(nexus).config  # validates: no credentials -> startup error
    log.info(
        "auth enabled: %d API key(s), JWT algorithms %s, public paths %s",
        len(config.api_keys),
        ",".join(config.jwt_algorithms) if config.jwt_enabled else "off",
        ",".join(config.public_paths) or "none",
    )
    return [make_auth_middleware(config.public_paths, nexus.settings.api_prefix)]


def public_path_matcher(
    public_paths: tuple[str, ...], api_prefix: str = ""
) -> Callable[[str], bool]:
    """``is_public(path)``: a public path covers itself and everything below it.

    ``/health`` covers ``/health/ready``; paths are compared after removing ``api_prefix``.
    """
    exact = frozenset(public_paths)
    below = tuple(path.rstrip("/") + "/" for path in public_paths)
    prefix_len = len(api_prefix)

    def is_public(path: str) -> bool:
        if prefix_len and path.startswith(api_prefix):
            path = path[prefix_len:] or "/"
        return path in exact or path.startswith(below)

    return is_public


def make_auth_middleware(public_paths: tuple[str, ...], api_prefix: str = "") -> Any:
    """Refuse (401) requests without an actor, except on public paths and CORS preflights."""
    is_public = public_path_matcher(public_paths, api_prefix)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.get(ACTOR) is None and not is_public(request.path):
            preflight = (
                request.method == hdrs.METH_OPTIONS
                and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            )
            if not preflight:
                raise Unauthorized("Authentication required")
        return await handler(request)

    return auth_middleware


@hookimpl(trylast=True)
def openapi_spec(nexus: Nexus, spec: Any) -> None:
    """Document bearer auth: a ``bearerAuth`` scheme (HTTP bearer, JWT) required globally, 401
    and 403 on every operation outside the public paths, and no requirement on those.

    Last of the ``openapi_spec`` hooks, so the routes other plugins document get them too.
    """
    if not nexus.settings.enable_auth:
        return
    if SECURITY_SCHEME not in spec.components.security_schemes:
        spec.components.security_scheme(
            SECURITY_SCHEME,
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An API key or a JWT: `Authorization: Bearer <token>`",
            },
        )
    spec.options["security"] = [{SECURITY_SCHEME: []}]
    config = authenticator_for(nexus).config
    is_public = public_path_matcher(config.public_paths, nexus.settings.api_prefix)
    add_responses(spec, error_responses(401, 403), where=lambda path, _: not is_public(path))
    for path, _, operation in operations(spec):
        if is_public(path):
            operation["security"] = []  # OpenAPI: this operation needs no credentials
