"""Rate limiting (per workflow, per endpoint, global): the middleware and its backend.

The middleware is installed only when some limit exists, so an app without limits pays nothing.
The logic lives in :mod:`nexus_aio.web.ratelimit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web.ratelimit import RateLimiter, make_middleware, make_ratelimit_ctx

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_middlewares(nexus: Nexus) -> list[Any]:
    if not RateLimiter.needed(nexus):
        return []
    return [make_middleware(RateLimiter(nexus))]


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any]:
    return [make_ratelimit_ctx(nexus)]
