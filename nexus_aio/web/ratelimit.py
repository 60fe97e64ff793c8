"""Rate limiting for every route that has a limit: one GCRA bucket per (policy, client).

The middleware is installed only when some limit exists (the global ``rate_limit``, a workflow's
``rate_limit``, or a custom endpoint, which defaults to ``endpoint_rate_limit`` per minute), so an
app without limits pays nothing. Built-in middlewares run innermost, after the core middleware has
resolved the actor, so the client is the authenticated actor when there is one.

Which bucket a request spends from is decided by its matched route, classified once per route:

* ``/workflows/{name}/execute``: the workflow's own limit, else the global one (per workflow name,
  cached after the first request);
* a handler carrying ``nexus_rate_limit`` (custom endpoints): that limit, one bucket per endpoint;
* ``/health*``, ``/metrics``, ``/docs*``, ``/openapi.json`` and CORS preflights: never limited;
* anything else (including unmatched paths): the global limit, if any.

A request that auth refuses afterwards (401/403 raised by the handler) gets its token back, so
clients are not charged for requests that never ran.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from nexus_aio.errors import (
    ConfigurationError,
    Forbidden,
    NexusError,
    RateLimitExceeded,
    Unauthorized,
)
from nexus_aio.execution.runtime import actor_id
from nexus_aio.stores.ratelimit import MemoryRateLimiter, RateLimitBackend, RateLimitDecision
from nexus_aio.web.app import Handler, nexus_error_from_http
from nexus_aio.web.keys import ACTOR, RATE_HEADERS

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = [
    "RATE_LIMITER",
    "ClientResolver",
    "Policy",
    "RateLimiter",
    "check_workflow_limit",
    "make_middleware",
]

log = logging.getLogger("nexus_aio.stores.ratelimit")

EXECUTE_PATH = "/workflows/{name}/execute"
_EXEMPT_PREFIXES = ("/health", "/docs")
_EXEMPT_PATHS = frozenset({"/metrics", "/openapi.json"})
_PEER_CACHE_SIZE = 4096
_MISSING: Any = object()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Policy:
    """A limit and the bucket family it fills: ``prefix + client`` is the backend key."""

    prefix: str  # "global|", "wf:<name>|" or "ep:<path>|"
    limit: int  # requests per minute
    burst: int | None = None  # bucket capacity; ``limit`` when None


class _Execute:
    """Marker for the execute route, whose policy depends on the workflow name."""


_EXECUTE = _Execute()
_RouteKind = Policy | _Execute | None


def _exempt(path: str) -> bool:
    return path in _EXEMPT_PATHS or path.startswith(_EXEMPT_PREFIXES)


# -- who is the client -----------------------------------------------------------------------
def parse_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``trusted_proxies`` entries (IPs or CIDRs) as networks; a bad entry fails startup."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError as exc:
            raise ConfigurationError(f"trusted_proxies: {spec!r} is not an IP or CIDR") from exc
    return tuple(networks)


def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ClientResolver:
    """Names the client a request counts against: ``actor:<id>`` or ``ip:<address>``.

    ``X-Forwarded-For`` is read only when the socket peer is a trusted proxy; the client is then
    the right-most address not in ``trusted_proxies`` (the one our nearest trusted hop saw).
    Anyone can write the header, so from an untrusted peer it is ignored entirely.
    """

    __slots__ = ("_peer_trust", "_trusted", "_use_actor")

    def __init__(self, trusted_proxies: Iterable[str] = (), *, use_actor: bool = True) -> None:
        self._trusted = parse_networks(trusted_proxies)
        self._use_actor = use_actor
        self._peer_trust: dict[str, bool] = {}  # bounded: cleared when full

    def __call__(self, request: web.Request) -> str:
        if self._use_actor:
            actor = request.get(ACTOR)
            if actor is not None:
                aid = actor_id(actor)
                if aid is not None:
                    return "actor:" + aid
        peer = request.remote or "unknown"
        if self._trusted and self.is_trusted_peer(peer):
            forwarded = request.headers.getall("X-Forwarded-For", ())
            if forwarded:
                return "ip:" + self.forwarded_client(peer, ",".join(forwarded))
        return "ip:" + peer

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self._trusted)

    def is_trusted_peer(self, peer: str) -> bool:
        """Whether the socket peer is a trusted proxy (cached: peers repeat)."""
        trusted = self._peer_trust.get(peer)
        if trusted is None:
            ip = _parse_ip(peer)
            trusted = ip is not None and self.is_trusted(ip)
            if len(self._peer_trust) >= _PEER_CACHE_SIZE:
                self._peer_trust.clear()
            self._peer_trust[peer] = trusted
        return trusted

    def forwarded_client(self, peer: str, header: str) -> str:
        """The right-most untrusted address of ``X-Forwarded-For`` sent by trusted ``peer``.

        Walking from the right, each trusted hop vouches for the entry to its left; the first
        untrusted entry is the client. An unparsable entry ends the walk at the last trusted hop
        (what a trusted proxy wrote there is not an address we can key on safely).
        """
        last = peer
        for part in reversed(header.split(",")):
            ip = _parse_ip(part)
            if ip is None:
                return last
            text = str(ip)
            if not self.is_trusted(ip):
                return text
            last = text
        return last


# -- per-app limiter -----------------------------------------------------------------------------
class RateLimiter:
    """One app's policies, client resolver and backend; the middleware's state."""

    def __init__(self, nexus: Nexus) -> None:
        settings = nexus.settings
        self.api_prefix: str = settings.api_prefix
        self.endpoint_limit: int = settings.endpoint_rate_limit
        self.global_policy: Policy | None = (
            Policy("global|", settings.rate_limit, settings.rate_limit_burst)
            if settings.rate_limit
            else None
        )
        self.client = ClientResolver(
            settings.trusted_proxies, use_actor=nexus.hooks.implemented("actor_from_request")
        )
        self._workflows = nexus.workflows
        self._workflow_policies: dict[str, Policy | None] = {}
        self._routes: dict[AbstractRoute, _RouteKind] = {}
        self.backend: RateLimitBackend | None = None
        self.memory: MemoryRateLimiter | None = None  # set when the backend allows the fast path

    @staticmethod
    def needed(nexus: Nexus) -> bool:
        """Whether any limit can apply: otherwise the middleware is not installed at all."""
        return (
            nexus.settings.rate_limit is not None
            or bool(nexus.endpoints)
            or any(wf.rate_limit for wf in nexus.workflows.values())
        )

    def attach(self, backend: RateLimitBackend) -> None:
        self.backend = backend
        self.memory = backend if isinstance(backend, MemoryRateLimiter) else None

    # -- policy resolution ---------------------------------------------------------------------
    def policy(self, request: web.Request) -> Policy | None:
        """The policy for ``request``, or None when it is not limited."""
        match_info = request.match_info
        if match_info.http_exception is not None:  # no route (404/405): not cached, unbounded
            return None if self._exempt_path(request.path) else self.global_policy
        route = match_info.route
        try:
            kind = self._routes[route]
        except KeyError:
            kind = self._routes[route] = self._classify(route)
        if kind is _EXECUTE:
            return self.workflow_policy(match_info["name"])
        return kind  # type: ignore[return-value]

    def workflow_policy(self, name: str) -> Policy | None:
        """The workflow's own limit, else the global one; unknown names are not cached."""
        try:
            return self._workflow_policies[name]
        except KeyError:
            pass
        workflow = self._workflows.get(name)
        if workflow is None:
            return self.global_policy
        policy = (
            Policy(f"wf:{name}|", workflow.rate_limit, workflow.rate_limit_burst)
            if workflow.rate_limit
            else self.global_policy
        )
        self._workflow_policies[name] = policy
        return policy

    def _exempt_path(self, path: str) -> bool:
        prefix = self.api_prefix
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :] or "/"
        return _exempt(path)

    def _classify(self, route: AbstractRoute) -> _RouteKind:
        if route.method == "OPTIONS":
            return None
        resource = route.resource
        canonical = resource.canonical if resource is not None else None
        if canonical is None:
            return self.global_policy
        if self._exempt_path(canonical):
            return None
        prefix = self.api_prefix
        if canonical == prefix + EXECUTE_PATH:
            return _EXECUTE
        endpoint_limit = getattr(route.handler, "nexus_rate_limit", _MISSING)
        if endpoint_limit is not _MISSING:
            return Policy(f"ep:{canonical}|", endpoint_limit or self.endpoint_limit)
        return self.global_policy

    # -- counting ------------------------------------------------------------------------------
    async def hit(self, key: str, policy: Policy) -> RateLimitDecision:
        memory = self.memory
        if memory is not None:
            return memory.hit_nowait(key, policy.limit, policy.burst)
        backend = self.backend
        if backend is None:
            raise RuntimeError("the rate limiter has no backend: the app is not running")
        return await backend.hit(key, policy.limit, policy.burst)

    async def refund(self, key: str, policy: Policy) -> None:
        memory = self.memory
        if memory is not None:
            memory.refund_nowait(key, policy.limit, policy.burst)
        elif self.backend is not None:
            await self.backend.refund(key, policy.limit, policy.burst)


RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("nexus_aio.rate_limiter", RateLimiter)


def refused(decision: RateLimitDecision) -> RateLimitExceeded:
    """The 429 for a refused decision: envelope details and headers tell the same numbers."""
    return RateLimitExceeded(
        f"Rate limit exceeded: {decision.limit} requests per minute;"
        f" retry in {decision.retry_after} s",
        details={
            "limit": decision.limit,
            "retry_after": decision.retry_after,
            "reset": decision.reset,
        },
        headers=decision.headers(),
    )


def _with_headers(exc: NexusError, headers: dict[str, str]) -> NexusError:
    exc.headers = {**headers, **exc.headers}  # a copy: the error may hold a shared dict
    return exc


def make_middleware(limiter: RateLimiter) -> Any:
    """The middleware; it carries ``nexus_rate_limiter`` so the startup context can find it."""
    policy_of = limiter.policy
    client_of = limiter.client

    @web.middleware
    async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        policy = policy_of(request)
        if policy is None:
            return await handler(request)
        key = policy.prefix + client_of(request)
        memory = limiter.memory
        if memory is not None:
            decision = memory.hit_nowait(key, policy.limit, policy.burst)
        else:
            decision = await limiter.hit(key, policy)
        headers = decision.headers()
        if not decision.allowed:
            raise refused(decision)
        request[RATE_HEADERS] = headers
        try:
            response = await handler(request)
        except (Unauthorized, Forbidden):
            await limiter.refund(key, policy)  # refused by auth: not charged
            raise
        except NexusError as exc:
            _with_headers(exc, headers)
            raise
        except web.HTTPException as exc:
            if exc.status < 400:
                exc.headers.update(headers)
                raise
            raise _with_headers(nexus_error_from_http(request, exc), headers) from None
        if not response.prepared:
            response.headers.update(headers)
        return response

    rate_limit_middleware.nexus_rate_limiter = limiter  # type: ignore[attr-defined]
    return rate_limit_middleware


def installed_limiter(app: web.Application) -> RateLimiter | None:
    for middleware in app.middlewares:
        limiter = getattr(middleware, "nexus_rate_limiter", None)
        if isinstance(limiter, RateLimiter):
            return limiter
    return None


async def check_workflow_limit(request: web.Request, name: str) -> dict[str, str]:
    """Spend one token of workflow ``name``'s bucket for this request's client.

    For routes that run several workflows per request (batch): each item is limited exactly like
    a single execution. Returns the ``X-RateLimit-*`` headers (empty when no limit applies);
    raises ``RateLimitExceeded`` (429, with ``Retry-After``) when the bucket is empty.
    """
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None:
        return {}
    policy = limiter.workflow_policy(name)
    if policy is None:
        return {}
    decision = await limiter.hit(policy.prefix + limiter.client(request), policy)
    if not decision.allowed:
        raise refused(decision)
    return decision.headers()


def make_ratelimit_ctx(nexus: Nexus) -> Any:
    """A cleanup context opening the backend the ``storage_backend`` hook picks."""

    async def ratelimit_ctx(app: web.Application) -> AsyncIterator[None]:
        """Open the backend the ``storage_backend`` hook picks, for the installed middleware."""
        limiter = installed_limiter(app)
        if limiter is None:
            yield
            return
        backend = await nexus.hooks.storage_backend("ratelimit")
        if backend is None:
            raise ConfigurationError("no storage_backend plugin supplied the ratelimit backend")
        limiter.attach(backend)
        app[RATE_LIMITER] = limiter
        try:
            yield
        finally:
            await backend.close()

    return ratelimit_ctx
