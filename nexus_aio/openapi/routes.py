"""The routes a document describes: read from a built aiohttp app (duck-typed, no aiohttp import)
or, without an app (the CLI), from the ``register_routes`` hook."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = ["RouteInfo", "normalize_path", "path_segment", "routes_of_app", "routes_of_hooks"]

_PARAM_REGEX = re.compile(r"\{([^}:]+):[^}]*\}")


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One served route: method, path template without ``api_prefix``, and its handler."""

    method: str
    path: str
    handler: Any


def normalize_path(path: str, prefix: str = "") -> str:
    """A route path without ``api_prefix`` and without regexes in its placeholders."""
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :] or "/"
    return _PARAM_REGEX.sub(r"{\1}", path)


def routes_of_app(app: Any, prefix: str = "") -> list[RouteInfo]:
    """The routes an aiohttp application serves (duck-typed: no aiohttp import here)."""
    out = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        out.append(
            RouteInfo(route.method, normalize_path(resource.canonical, prefix), route.handler)
        )
    return out


def routes_of_hooks(nexus: Nexus) -> list[RouteInfo]:
    """The routes plugins would register (for a document without a built app, e.g. the CLI)."""
    return [
        RouteInfo(route.method, normalize_path(route.path), route.handler)
        for route in nexus.hooks.register_routes()
    ]


def path_segment(name: str) -> str:
    """A workflow name as one path segment: percent-encoded (``?``, ``#``, ``{``, spaces and
    non-ASCII would otherwise change the URL or the template), dots too when the name is all
    dots (``..`` would be resolved away)."""
    if name.strip(".") == "":
        return "%2E" * len(name)
    return quote(name, safe="")
