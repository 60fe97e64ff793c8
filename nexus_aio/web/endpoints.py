"""Custom endpoints: ``@app.endpoint(path, methods, rate_limit)`` functions as aiohttp routes.

What each parameter of the function is (the request, a path or query parameter, the JSON body)
is worked out once, when the app is built, by :mod:`nexus_aio.workflows.endpoint_params`; a
request then only runs the prepared plan. The JSON body gets the size limit (``read_json``) and
the security filter (``check_payload``). A handler that takes the ``Request`` and receives a JSON
body (``Content-Type: application/json``) on a POST/PUT/PATCH/DELETE gets it checked by the
security filter before it runs; whatever the Content-Type, the request it receives is a
:class:`VettedRequest`, whose ``text()``/``json()`` apply the same limits and filter (and refuse
undecodable text with a 400).

Responses: a ``web.StreamResponse`` is returned unchanged; ``None`` becomes ``204 No Content``;
anything else is serialised as JSON with status 200. Sync handlers run in the runtime's thread
pool (``Runtime.run_sync_fn``) so they never block the event loop; (async) generator functions
are refused at build (return a ``web.StreamResponse`` to stream).

Every route handler built here carries two attributes other parts of the system read:

* ``handler.nexus_rate_limit: int``: requests per minute (the endpoint's ``rate_limit``, else the
  ``endpoint_rate_limit`` setting), read by the rate-limit middleware;
* ``handler.nexus_endpoint: EndpointInfo``: the metadata OpenAPI documents.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import DEFAULT_JSON_DECODER

from nexus_aio.errors import ValidationError
from nexus_aio.security import check_payload, limits_from
from nexus_aio.web.keys import nexus_of
from nexus_aio.web.request import parse_json, read_body, read_json
from nexus_aio.web.responses import json_response
from nexus_aio.workflows.endpoint_params import (
    EndpointInfo,
    EndpointPlan,
    check_text,
    expected_type,
    plan_endpoint,
)
from nexus_aio.workflows.endpoint_problems import errors_of, problem, raise_problems
from nexus_aio.workflows.jsontypes import MISSING

if TYPE_CHECKING:
    from nexus_aio.nexus import EndpointSpec, Nexus

__all__ = [
    "analyze_endpoint",
    "build_endpoint_routes",
    "make_endpoint_handler",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NO_CONTENT_STATUS = 204


def _is_request(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, web.BaseRequest)


def _plan(spec: EndpointSpec, rate_limit: int) -> EndpointPlan:
    return plan_endpoint(spec, rate_limit, _is_request)


def analyze_endpoint(spec: EndpointSpec, default_rate_limit: int = 100) -> EndpointInfo:
    """The metadata of one declared endpoint (raises ``RegistrationError`` for a bad signature).

    For tools that document endpoints without building the app (``nexus.endpoints``).
    """
    return _plan(spec, spec.rate_limit or default_rate_limit).info


# -- the handler -------------------------------------------------------------------------------
def _response(result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=_NO_CONTENT_STATUS)
    return json_response(result)


def make_endpoint_handler(nexus: Nexus, spec: EndpointSpec) -> Handler:
    """The aiohttp handler for one endpoint, its parameters planned once here."""
    rate_limit = spec.rate_limit or nexus.settings.endpoint_rate_limit
    plan = _plan(spec, rate_limit)
    fn = spec.handler
    limits = limits_from(nexus.settings)
    request_arg = plan.request_arg
    path_plan = plan.path
    query_plan = plan.query
    body = plan.body
    load_body = plan.body_loader
    is_async = plan.is_async
    vet_raw_json = request_arg is not None and body is None

    async def read_body(
        request: web.Request, kwargs: dict[str, Any], problems: list[dict[str, str]]
    ) -> None:
        assert body is not None and load_body is not None
        value = await read_json(request, empty=MISSING)
        if value is MISSING:
            if body.required:
                problems.append(problem("body", "object", "missing", "Missing request body"))
            else:
                kwargs[body.name] = body.default
            return
        check_payload(value, limits, path="body")
        try:
            kwargs[body.name] = load_body(value)
        except ValidationError as exc:
            problems.extend(errors_of(exc))

    async def handler(request: web.Request) -> web.StreamResponse:
        kwargs: dict[str, Any] = {}
        problems: list[dict[str, str]] = []
        if path_plan:
            match_info = request.match_info
            for extract in path_plan:
                kwargs[extract[0]] = check_text(extract, match_info[extract[1]], problems)
        if query_plan:
            query = request.query
            for extract in query_plan:
                name, key, _, _, default, required, many, _ = extract
                if many:
                    texts = query.getall(key, ())
                    if texts:
                        kwargs[name] = [check_text(extract, t, problems) for t in texts]
                        continue
                else:
                    text = query.get(key)
                    if text is not None:
                        kwargs[name] = check_text(extract, text, problems)
                        continue
                if required:
                    problems.append(
                        problem(
                            key,
                            expected_type(extract),
                            "missing",
                            f"Missing required query parameter: {key}",
                        )
                    )
                else:
                    kwargs[name] = default
        if body is not None:
            await read_body(request, kwargs, problems)
        elif vet_raw_json and request.method in _BODY_METHODS and _is_json(request):
            check_payload(await read_json(request), limits, path="body")
        if problems:
            raise_problems(problems)
        if request_arg is not None:
            request.__class__ = VettedRequest  # its json()/text() get the checks read_json has
            kwargs[request_arg] = request
        if is_async:
            result = await fn(**kwargs)
        else:
            service = nexus.service
            if service is None:  # pragma: no cover - routes only run while the app serves
                raise RuntimeError("endpoint called while the app is not running")
            result = await service.runtime.run_sync_fn(functools.partial(fn, **kwargs))
            if inspect.isawaitable(result):
                result = await result
        return _response(result)

    handler.__name__ = handler.__qualname__ = f"endpoint_{plan.info.name}"
    handler.__doc__ = plan.info.description
    handler.nexus_rate_limit = rate_limit  # type: ignore[attr-defined]
    handler.nexus_endpoint = plan.info  # type: ignore[attr-defined]
    return handler


class VettedRequest(web.Request):
    """The request a custom endpoint's function receives: ``await request.text()`` and
    ``await request.json()`` read the body within ``max_request_size`` and ``body_timeout``,
    whatever the Content-Type; text that does not decode in its charset is a 400, and what
    ``json()`` returns has passed the security filter (depth, keys, size) and the 64-bit integer
    check. ``read()``, ``content`` and ``multipart()`` stay aiohttp's (raw bytes are the
    function's business), bounded by the same size limit and timeout."""

    async def text(self) -> str:
        raw = await read_body(self)
        charset = self.charset or "utf-8"
        try:
            return raw.decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise ValidationError(
                f"The request body is not valid {charset} text",
                details={"field": "body", "expected": f"{charset} text", "received": "bytes"},
            ) from None

    async def json(self, *, loads: Callable[[str], Any] | None = None) -> Any:
        if loads is None or loads is DEFAULT_JSON_DECODER:
            value = await read_json(self)
        else:
            value = parse_json(await self.text(), "body", "body", loads=loads)
        check_payload(value, limits_from(nexus_of(self).settings), path="body")
        return value


def _is_json(request: web.Request) -> bool:
    content_type = request.content_type
    return content_type == "application/json" or content_type.endswith("+json")


def build_endpoint_routes(nexus: Nexus) -> list[web.RouteDef]:
    """One route per (method, path) of every ``@app.endpoint``; a method not declared on a path
    gets aiohttp's 405 with ``Allow`` (rendered as the envelope by the core middleware)."""
    routes = []
    for spec in nexus.endpoints:
        handler = make_endpoint_handler(nexus, spec)
        for method in spec.methods:
            # Exactly the declared methods: no implicit HEAD a ``request.method`` switch misses.
            extra = {"allow_head": False} if method == "GET" else {}
            routes.append(web.route(method, spec.path, handler, **extra))
    return routes
