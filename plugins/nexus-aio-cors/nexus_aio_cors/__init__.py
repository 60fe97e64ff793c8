"""nexus-aio-cors: aiohttp-cors on every route, configured from the ``cors_*`` settings.

Enabled by the core switch ``Nexus(enable_cors=True)`` / ``NEXUS_ENABLE_CORS=1``
(``app.api.cors_enabled``); this plugin provides the ``cors`` feature and declares the ``cors_*``
settings (:data:`SETTINGS`: constructor keyword, ``app.api.cors_*``, ``NEXUS_CORS_*``).
Disabled, the plugin installs nothing. Enabled, it configures aiohttp-cors from a cleanup
context: aiohttp runs those at startup *before* it freezes the router, so by then every route
exists (core, custom endpoints, plugin routes) and each one gets CORS and a preflight handler.

The allowed origins are also the core's trusted origins (hook ``trusted_origins``): a page on one
of them may send state-changing requests that the core's cross-origin protection would refuse.
No ``cors_origins`` (or ``*``) allows every origin: answers carry ``Access-Control-Allow-Origin:
*`` (never the caller's origin reflected, never credentials) and startup says so.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp_cors
from aiohttp import hdrs, web

from nexus_aio import Setting, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.security import normalize_origin

if TYPE_CHECKING:
    from nexus_aio import Nexus

__version__ = "0.1.0"
__all__ = [
    "EXPOSE_HEADERS",
    "SETTINGS",
    "CorsSettings",
    "cors_settings_for",
    "install_cors",
    "register_cleanup_ctx",
    "register_settings",
    "trusted_origins",
]

log = logging.getLogger("nexus_aio.cors")

# Response headers a browser script may read: ids, rate-limit state, where an async run lives.
EXPOSE_HEADERS = (
    "X-Request-ID",
    "X-Session-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "Location",
)
DEFAULT_MAX_AGE = 600
ANY_ORIGIN = "*"
EVERY_ORIGIN_WARNING = (
    "CORS: every origin is allowed (no cors_origins): any web page may call this API, run "
    "workflows and read the answers (Access-Control-Allow-Origin: *, without credentials); "
    "set cors_origins to the pages that need it"
)

SETTINGS = (
    Setting(
        "cors_origins",
        list[str],
        [],
        feature="cors",
        help="allowed origins (scheme://host[:port]); '*' or none: any origin",
    ),
    Setting(
        "cors_methods",
        list[str],
        ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        feature="cors",
        help="methods a cross-origin request may use",
    ),
    Setting(
        "cors_headers",
        list[str],
        [
            "Content-Type",
            "Authorization",
            "X-Request-ID",
            "X-Session-ID",
            "Idempotency-Key",
            "Last-Event-ID",
        ],
        feature="cors",
        help="request headers a cross-origin request may send",
    ),
    Setting("cors_credentials", bool, False, feature="cors", help="allow credentialed requests"),
    Setting(
        "cors_max_age",
        int | None,
        DEFAULT_MAX_AGE,
        feature="cors",
        help="seconds a browser may cache a preflight answer (None: no Access-Control-Max-Age)",
    ),
)


def split_list(value: Any) -> list[str]:
    """A comma-separated string or an iterable of strings as a clean list."""
    if value is None:
        return []
    parts: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    return [str(p).strip() for p in parts if str(p).strip()]


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Validated CORS settings (see docs/security.md)."""

    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    credentials: bool
    max_age: int | None
    expose_headers: tuple[str, ...] = EXPOSE_HEADERS

    @classmethod
    def from_settings(cls, settings: Any) -> CorsSettings:
        origins = [normalize_origin(o, "cors_origins") for o in split_list(settings.cors_origins)]
        if not origins or ANY_ORIGIN in origins:
            origins = [ANY_ORIGIN]
        max_age = settings.cors_max_age
        config = cls(
            origins=tuple(dict.fromkeys(origins)),
            methods=tuple(dict.fromkeys(m.upper() for m in split_list(settings.cors_methods))),
            headers=tuple(dict.fromkeys(split_list(settings.cors_headers))),
            credentials=bool(settings.cors_credentials),
            max_age=None if max_age is None else int(max_age),
        )
        config.validate()
        return config

    @property
    def any_origin(self) -> bool:
        return ANY_ORIGIN in self.origins

    def validate(self) -> None:
        if "*" in self.origins and self.credentials:
            raise ConfigurationError(
                "cors_origins '*' cannot be combined with cors_credentials=True: any site could "
                "then make credentialed requests; list the allowed origins instead"
            )
        if not self.methods:
            raise ConfigurationError("cors_methods is empty")
        if self.max_age is not None and self.max_age < 0:
            raise ConfigurationError(f"cors_max_age must be >= 0, got {self.max_age!r}")

    def resource_options(self) -> dict[str, aiohttp_cors.ResourceOptions]:
        """aiohttp-cors defaults: the same options for each allowed origin."""
        options = aiohttp_cors.ResourceOptions(
            allow_credentials=self.credentials,
            expose_headers=self.expose_headers,
            allow_headers="*" if "*" in self.headers else self.headers,
            allow_methods="*" if "*" in self.methods else self.methods,
            max_age=self.max_age,
        )
        return dict.fromkeys(self.origins, options)


@hookimpl
def register_settings(nexus: Nexus) -> tuple[Setting, ...]:
    """The ``cors_*`` settings; declaring them with ``feature="cors"`` provides ``enable_cors``."""
    return SETTINGS


# One validated configuration per app, rebuilt if the app's settings object changes (it is frozen
# and replaced once, at create_app()). Weak keys: a discarded Nexus takes its entry with it.
_CONFIGS: weakref.WeakKeyDictionary[Any, tuple[Any, CorsSettings]] = weakref.WeakKeyDictionary()


def cors_settings_for(nexus: Nexus) -> CorsSettings:
    """The app's validated CORS settings, read once per settings object."""
    settings = nexus.settings
    cached = _CONFIGS.get(nexus)
    if cached is None or cached[0] is not settings:
        cached = (settings, CorsSettings.from_settings(settings))
        _CONFIGS[nexus] = cached
    return cached[1]


@hookimpl
def trusted_origins(nexus: Nexus) -> tuple[str, ...] | None:
    """The allowed origins, for the core's cross-origin protection (``*``: every origin)."""
    if not nexus.settings.enable_cors:
        return None
    return cors_settings_for(nexus).origins


@hookimpl(trylast=True)
def register_cleanup_ctx(nexus: Nexus) -> list[Any] | None:
    """Validate at app build (a bad setting fails ``create_app``); install at startup, last."""
    if not nexus.settings.enable_cors:
        return None
    cors = cors_settings_for(nexus)

    async def cors_ctx(app: web.Application) -> AsyncIterator[None]:
        install_cors(app, cors)
        if cors.any_origin:
            log.warning(EVERY_ORIGIN_WARNING)
        yield

    return [cors_ctx]


def install_cors(app: web.Application, cors: CorsSettings) -> int:
    """Configure aiohttp-cors on every route of ``app``; returns how many routes it covers.

    Call before the router freezes. A resource that already has its own OPTIONS (or ``*``)
    handler is left alone with a warning: aiohttp-cors cannot add a preflight handler there.
    """
    config = aiohttp_cors.setup(app, defaults=cors.resource_options())
    covered = 0
    for route in list(app.router.routes()):
        if route.method == hdrs.METH_OPTIONS:
            continue
        try:
            config.add(route)
        except ValueError as exc:
            log.warning("CORS not applied to %s %s: %s", route.method, route.resource, exc)
            continue
        covered += 1
    app.on_response_prepare.append(make_response_hook(cors))
    return covered


def make_response_hook(
    cors: CorsSettings,
) -> Callable[[web.Request, web.StreamResponse], Coroutine[Any, Any, None]]:
    """``Vary: Origin`` on every response; a granted preflight lists every configured method;
    with every origin allowed, ``Access-Control-Allow-Origin: *`` instead of the caller's origin.

    aiohttp-cors answers a preflight with only the requested method and headers and sends no
    ``Vary``, so a shared cache could serve one origin's grant to another. It also lists exposed
    headers in set order (different in each process); we keep the configured order. And it
    reflects whatever ``Origin`` came, even for ``*``: a grant to one named page, which ``*``
    (no credentials) never is.
    """
    methods = ", ".join(cors.methods)
    headers = None if "*" in cors.headers else ", ".join(cors.headers)
    exposed = ", ".join(cors.expose_headers)
    any_origin = cors.any_origin

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if any_origin and hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in response.headers:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = ANY_ORIGIN
            response.headers.popall(hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS, None)
        vary = response.headers.get(hdrs.VARY)
        if vary is None:
            response.headers[hdrs.VARY] = "Origin"
        elif "origin" not in vary.lower():
            response.headers[hdrs.VARY] = f"{vary}, Origin"
        if hdrs.ACCESS_CONTROL_EXPOSE_HEADERS in response.headers:
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = exposed
        elif hdrs.ACCESS_CONTROL_ALLOW_METHODS in response.headers:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = methods
            if headers:
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = headers

    return on_response_prepare
