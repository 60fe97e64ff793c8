"""Cross-origin protection: a web page on another site cannot make this server change state.

The attack: any page a user visits can ``POST`` (a form, or ``fetch`` in ``no-cors`` mode) to
``http://127.0.0.1:8000`` and run workflows there; CORS only stops the page from *reading* the
answer. Browsers say where a request comes from, so the core refuses, with 403 ``Forbidden``,
a state-changing request that a browser marks cross-origin. The rules follow Go 1.25's
``net/http`` ``CrossOriginProtection``, in this order:

1. Neither ``Sec-Fetch-Site`` nor ``Origin``: not a browser (curl, the SDKs, the spec's
   ``curl -d`` examples) or one too old to say: allowed.
2. An ``Origin`` among the trusted origins (the ``trusted_origins`` hook: the CORS plugin answers
   its ``cors_origins``; ``*`` trusts every origin): allowed.
3. ``Sec-Fetch-Site`` present: ``same-origin`` or ``none`` (typed in the address bar, a bookmark)
   is allowed; anything else (``cross-site``, ``same-site``) is refused.
4. Only ``Origin``: allowed when its ``host[:port]`` is the request's ``Host`` (the server's own
   origin), refused otherwise (``Origin: null`` included).

State-changing means every method but ``GET``, ``HEAD`` and ``OPTIONS``, plus
``GET /workflows/{name}/execute`` (it runs a workflow in every mode). Custom endpoints and plugin
routes follow their method: a ``GET`` endpoint must not change state (give it ``POST``).

Per request without those headers (every non-browser client) the check is two header lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from nexus_aio.errors import Forbidden
from nexus_aio.security import normalize_origin

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = [
    "SAFE_METHODS",
    "STATE_CHANGING_GETS",
    "CrossOriginPolicy",
    "make_cross_origin_check",
    "normalize_origin",
]

SAFE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})
# Core GET routes that change state (paths below ``api_prefix``).
STATE_CHANGING_GETS = ("/workflows/{name}/execute",)
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})
SEC_FETCH_SITE = hdrs.istr("Sec-Fetch-Site")  # istr: no case folding per lookup
DEFAULT_PORTS = {"http": "80", "https": "443"}


class CrossOriginPolicy:
    """The decision for one request (see the module doc); built once per app."""

    __slots__ = ("any_origin", "state_changing_gets", "trusted")

    def __init__(self, trusted: Iterable[str] = (), api_prefix: str = "") -> None:
        origins = {normalize_origin(o) for o in trusted}
        self.any_origin = "*" in origins
        self.trusted = frozenset(origins - {"*"})
        self.state_changing_gets = frozenset(api_prefix + path for path in STATE_CHANGING_GETS)

    def changes_state(self, request: web.Request) -> bool:
        if request.method not in SAFE_METHODS:
            return True
        if request.method != hdrs.METH_GET:
            return False
        resource = request.match_info.route.resource
        return resource is not None and resource.canonical in self.state_changing_gets

    def refusal(self, request: web.Request, site: str | None, origin: str | None) -> str | None:
        """Why the request is refused, or None to let it through."""
        if self.any_origin or not self.changes_state(request):
            return None
        if origin is not None and origin.lower() in self.trusted:
            return None
        if site is not None:
            if site in ALLOWED_FETCH_SITES:
                return None
            return f"the browser marks it {site} (Sec-Fetch-Site)"
        if origin is not None and self.is_own_origin(request, origin):
            return None
        return f"its Origin {origin!r} is neither this server's nor a trusted one"

    @staticmethod
    def is_own_origin(request: web.Request, origin: str) -> bool:
        """Whether ``Origin``'s ``host[:port]`` is the ``Host`` the request was sent to."""
        scheme, sep, netloc = origin.lower().partition("://")
        if not sep or not netloc:
            return False  # "null", garbage
        host = request.host.lower()
        if netloc == host:
            return True
        default = DEFAULT_PORTS.get(scheme)
        return default is not None and host == f"{netloc}:{default}"


def make_cross_origin_check(nexus: Nexus) -> Callable[[web.Request], None]:
    """The core's cross-origin check, trusting what the ``trusted_origins`` hook returns; the
    core middleware calls it (one middleware less per request) and it raises ``Forbidden``."""
    policy = CrossOriginPolicy(nexus.hooks.trusted_origins(), nexus.settings.api_prefix)

    def check_cross_origin(request: web.Request) -> None:
        headers = request.headers
        site = headers.get(SEC_FETCH_SITE)
        origin = headers.get(hdrs.ORIGIN)
        if site is None and origin is None:  # not a browser: nothing to check
            return
        reason = policy.refusal(request, site, origin)
        if reason is not None:
            raise Forbidden(
                f"Cross-origin request refused: {request.method} {request.path}: {reason}",
                details={"origin": origin, "sec_fetch_site": site},
            )

    return check_cross_origin
