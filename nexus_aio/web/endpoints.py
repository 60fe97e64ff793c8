"""Custom endpoints: ``@app.endpoint(path, methods, rate_limit)`` functions as aiohttp routes.

Everything about a handler's parameters is worked out once, when the app is built
(:func:`analyze_endpoint`); a request then only runs the prepared extractors. Each parameter of the
decorated function is, in this order of precedence:

* the request: annotated ``aiohttp.web.Request`` (or any ``BaseRequest`` subclass);
* a path parameter: its name appears in the path template (``/items/{item_id}``); the text is
  coerced to the annotation (``nexus_aio.workflows.coerce.coerce_text``);
* the JSON body: annotated ``dict`` (``dict[str, X]``, a ``TypedDict``), a dataclass, or a
  marshmallow ``Schema`` subclass or instance. At most one. Size limit (``read_json``) and
  security filter (``check_payload``) apply; the dataclass/dict is checked like workflow inputs,
  the marshmallow schema loads it. Without a default it is required;
* otherwise a query parameter: coerced to the annotation; ``list[X]`` reads repeated keys
  (``?tag=a&tag=b``); the default may be a ``Query(default, pattern=..., ge=..., le=...,
  max_length=...)`` declaring constraints; no default (or ``Query(...)``) means required.

Bad parameters raise one ``ValidationError`` (400) listing every problem with the same
``details`` shape as workflow validation: ``field``/``expected``/``received`` of the first one
and an ``errors`` list. A handler that takes the ``Request`` and receives a JSON body
(``Content-Type: application/json``) on a POST/PUT/PATCH/DELETE gets it checked by the security
filter before it runs, so ``await request.json()`` inside only sees vetted input.

Responses: a ``web.StreamResponse`` is returned unchanged; ``None`` becomes ``204 No Content``;
anything else is serialised as JSON with status 200. Sync handlers run in the runtime's thread
pool (``Runtime.run_sync_fn``) so they never block the event loop; (async) generator functions
are refused at build (return a ``web.StreamResponse`` to stream).

Every route handler built here carries two attributes other parts of the system read:

* ``handler.nexus_rate_limit: int``: requests per minute (the endpoint's ``rate_limit``, else the
  ``endpoint_rate_limit`` setting), read by the rate-limit middleware;
* ``handler.nexus_endpoint: EndpointInfo``: the metadata for OpenAPI: ``path`` (as declared,
  without ``api_prefix``), ``methods``, ``name``, ``description`` (the docstring),
  ``parameters`` (``EndpointParam``: ``name``, ``location`` "path"/"query", ``schema`` (JSON
  Schema with constraints and default folded in), ``required``, ``default``, ``constraints``
  (JSON Schema keywords: ``pattern``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum``, ``minLength``, ``maxLength``), ``description``), ``body``
  (``EndpointBody`` or None: ``kind`` "json"/"dataclass"/"marshmallow", ``schema`` (JSON Schema,
  None for marshmallow), ``marshmallow`` (the ``Schema`` instance or None), ``required``) and
  ``rate_limit``; ``body_schema`` is the body's JSON Schema or marshmallow schema.
  :meth:`EndpointInfo.to_dict` gives it all as plain JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from nexus_aio.errors import RegistrationError, ValidationError
from nexus_aio.query import Query
from nexus_aio.security import check_payload
from nexus_aio.web.request import read_json
from nexus_aio.web.responses import json_response
from nexus_aio.workflows.coerce import coerce_text
from nexus_aio.workflows.hints import callable_hints
from nexus_aio.workflows.inputs import InputField, InputSchema
from nexus_aio.workflows.jsonschema import type_json_schema
from nexus_aio.workflows.jsontypes import MISSING, received_type_name

if TYPE_CHECKING:
    from nexus_aio.nexus import EndpointSpec, Nexus

__all__ = [
    "EndpointBody",
    "EndpointInfo",
    "EndpointParam",
    "analyze_endpoint",
    "build_endpoint_routes",
    "make_endpoint_handler",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PATH_VAR = re.compile(r"\{([_a-zA-Z][_a-zA-Z0-9]*)(?=[:}])")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NO_CONTENT_STATUS = 204
_MAX_FIELDS_IN_MESSAGE = 10
_MARSHMALLOW_TYPES = {
    "String": "string",
    "Str": "string",
    "Email": "string",
    "Url": "string",
    "URL": "string",
    "UUID": "string",
    "DateTime": "string",
    "Date": "string",
    "Integer": "integer",
    "Int": "integer",
    "Float": "number",
    "Number": "number",
    "Decimal": "number",
    "Boolean": "boolean",
    "Bool": "boolean",
    "List": "array",
    "Tuple": "array",
    "Dict": "object",
    "Mapping": "object",
    "Nested": "object",
}


# -- metadata ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EndpointParam:
    """A path or query parameter, as OpenAPI documents it."""

    name: str
    location: Literal["path", "query"]
    schema: dict[str, Any]
    required: bool
    default: Any = None
    constraints: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "schema": self.schema,
            "required": self.required,
        }
        if not self.required:
            out["default"] = self.default
        if self.constraints:
            out["constraints"] = self.constraints
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class EndpointBody:
    """The JSON body parameter: how it is loaded and its schema for the docs."""

    name: str
    kind: Literal["json", "dataclass", "marshmallow"]
    annotation: Any
    schema: dict[str, Any] | None
    marshmallow: Any
    required: bool
    default: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "required": self.required}
        if self.schema is not None:
            out["schema"] = self.schema
        if self.marshmallow is not None:
            out["marshmallow"] = type(self.marshmallow).__name__
        return out


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What an endpoint accepts: recorded on its handlers as ``nexus_endpoint``."""

    path: str
    methods: tuple[str, ...]
    name: str
    description: str | None
    parameters: tuple[EndpointParam, ...]
    body: EndpointBody | None
    rate_limit: int

    @property
    def body_schema(self) -> Any:
        """The body's JSON Schema, or its marshmallow ``Schema`` (apispec resolves it); None."""
        body = self.body
        if body is None:
            return None
        return body.marshmallow if body.marshmallow is not None else body.schema

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "methods": list(self.methods),
            "name": self.name,
            "description": self.description,
            "parameters": [p.to_dict() for p in self.parameters],
            "body": self.body.to_dict() if self.body is not None else None,
            "rate_limit": self.rate_limit,
        }


# -- the per-request plan ----------------------------------------------------------------------
# (kwarg name, key in match_info/query, coerce, Query or None, default, required, many, item_ann)
_Extract = tuple[str, str, Any, Query | None, Any, bool, bool, Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    info: EndpointInfo
    request_arg: str | None
    path: tuple[_Extract, ...]
    query: tuple[_Extract, ...]
    body: EndpointBody | None
    body_loader: Callable[[Any], Any] | None
    is_async: bool


# -- analysis (once, at build) -----------------------------------------------------------------
def path_variables(path: str) -> list[str]:
    """The ``{name}`` / ``{name:regex}`` variables of an aiohttp path template, in order."""
    return _PATH_VAR.findall(path)


def _is_request(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, web.BaseRequest)


def _marshmallow_schema(annotation: Any) -> Any:
    """A marshmallow ``Schema`` instance when ``annotation`` is a Schema class or instance."""
    try:
        from marshmallow import Schema
    except ImportError:  # pragma: no cover - marshmallow is a core dependency
        return None
    if isinstance(annotation, Schema):
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, Schema):
        return annotation()
    return None


def _body_kind(annotation: Any) -> Literal["json", "dataclass"] | None:
    bare = typing.get_origin(annotation) or annotation
    if bare is dict or bare is Mapping or typing.is_typeddict(annotation):
        return "json"
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return "dataclass"
    return None


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _is_generator(fn: Callable[..., Any]) -> bool:
    return inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn)


def _list_item(annotation: Any) -> Any:
    """The item type of ``list[X]`` or ``list[X] | None`` (read from repeated keys), else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) != 1:
            return None
        annotation = rest[0]
        origin = typing.get_origin(annotation)
    if annotation is list:
        return str
    if origin is list:
        args = typing.get_args(annotation)
        return args[0] if args else str
    return None


def _constraints(query: Query | None) -> dict[str, Any]:
    if query is None:
        return {}
    pairs = {
        "pattern": query.pattern,
        "minimum": query.ge,
        "maximum": query.le,
        "exclusiveMinimum": query.gt,
        "exclusiveMaximum": query.lt,
        "minLength": query.min_length,
        "maxLength": query.max_length,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _param_default(param: inspect.Parameter) -> tuple[Query | None, Any, bool]:
    """(Query or None, default, required) from the declared default."""
    default = param.default
    if isinstance(default, Query):
        query = default
        return query, (None if query.required else query.default), query.required
    if default is inspect.Parameter.empty:
        return None, None, True
    return None, default, False


def _text_param(
    name: str,
    annotation: Any,
    param: inspect.Parameter,
    location: Literal["path", "query"],
    where: str,
) -> tuple[_Extract, EndpointParam]:
    query, default, required = _param_default(param)
    key = (query.alias if query is not None and query.alias else None) or name
    item = _list_item(annotation) if location == "query" else None
    many = item is not None
    if item is None:
        item = annotation
    try:  # fail at build, not on the first request, when the type cannot be read from text
        coerce_text(item, "", key)
    except ValidationError:
        pass
    except Exception as exc:
        raise RegistrationError(
            f"{where}: parameter {name!r} has a type that cannot be read from text: {exc}"
        ) from None
    if location == "path":
        required = True
    constraints = _constraints(query)
    schema = {**type_json_schema(annotation), **constraints}
    if not required and default is not None:
        schema["default"] = default
    description = query.description if query is not None else None
    meta = EndpointParam(key, location, schema, required, default, constraints, description)
    extract = (name, key, coerce_text, query, default, required, many, item)
    return extract, meta


def _body_param(
    name: str, annotation: Any, param: inspect.Parameter, where: str
) -> tuple[EndpointBody, Callable[[Any], Any]] | None:
    required = param.default is inspect.Parameter.empty
    default = None if required else param.default
    schema = _marshmallow_schema(annotation)
    if schema is not None:
        body = EndpointBody(name, "marshmallow", annotation, None, schema, required, default)
        return body, _marshmallow_loader(schema)
    kind = _body_kind(annotation)
    if kind is None:
        return None
    try:
        checker = InputSchema([InputField("body", annotation, True, MISSING)])
    except RegistrationError as exc:
        raise RegistrationError(f"{where}: body parameter {name!r}: {exc}") from None
    json_schema = type_json_schema(annotation) or {"type": "object"}

    def load(value: Any) -> Any:
        return checker.validate({"body": value})["body"]

    body = EndpointBody(name, kind, annotation, json_schema, None, required, default)
    return body, load


def _analyze(spec: EndpointSpec, rate_limit: int) -> _Plan:
    fn = spec.handler
    where = f"endpoint {spec.path!r} ({spec.name or getattr(fn, '__name__', fn)!r})"
    if _is_generator(fn):
        raise RegistrationError(
            f"{where}: generator handlers are not supported; return a web.StreamResponse to stream"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{where}: cannot read the signature: {exc}") from None
    hints = callable_hints(fn)
    variables = set(path_variables(spec.path))
    request_arg: str | None = None
    path: list[_Extract] = []
    query: list[_Extract] = []
    params: list[EndpointParam] = []
    body: tuple[EndpointBody, Callable[[Any], Any]] | None = None
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise RegistrationError(
                f"{where}: parameter {name!r}: *args, **kwargs and positional-only parameters "
                "cannot be filled from a request"
            )
        annotation = hints.get(name, param.annotation)
        if isinstance(annotation, str):
            raise RegistrationError(
                f"{where}: parameter {name!r}: cannot resolve the annotation {annotation!r}"
            )
        if annotation is inspect.Parameter.empty:
            annotation = Any
        if _is_request(annotation):
            request_arg = name
            continue
        if name in variables:
            extract, meta = _text_param(name, annotation, param, "path", where)
            path.append(extract)
            params.append(meta)
            continue
        found = _body_param(name, annotation, param, where)
        if found is not None:
            if body is not None:
                raise RegistrationError(
                    f"{where}: two body parameters ({body[0].name!r} and {name!r}); "
                    "declare one and read the rest from it"
                )
            body = found
            continue
        extract, meta = _text_param(name, annotation, param, "query", where)
        query.append(extract)
        params.append(meta)
    declared = {e[0] for e in path}
    for var in path_variables(spec.path):  # read from ``request.match_info`` by the handler
        if var not in declared:
            params.append(EndpointParam(var, "path", {"type": "string"}, True))
    info = EndpointInfo(
        spec.path,
        tuple(spec.methods),
        str(spec.name or getattr(fn, "__name__", "endpoint")),
        inspect.getdoc(fn),
        tuple(params),
        body[0] if body else None,
        rate_limit,
    )
    return _Plan(
        info,
        request_arg,
        tuple(path),
        tuple(query),
        body[0] if body else None,
        body[1] if body else None,
        _is_async(fn),
    )


def analyze_endpoint(spec: EndpointSpec, default_rate_limit: int = 100) -> EndpointInfo:
    """The metadata of one declared endpoint (raises ``RegistrationError`` for a bad signature).

    For tools that document endpoints without building the app (``nexus.endpoints``).
    """
    return _analyze(spec, spec.rate_limit or default_rate_limit).info


# -- problems ----------------------------------------------------------------------------------
def _problem(field: str, expected: str, received: str, message: str) -> dict[str, str]:
    return {"field": field, "expected": expected, "received": received, "message": message}


def _raise_problems(problems: list[dict[str, str]]) -> None:
    """One ``ValidationError`` with the workflow-validation ``details`` shape."""
    first = problems[0]
    fields = [p["field"] for p in problems]
    if len(problems) == 1:
        message = f"Invalid parameter: {fields[0]}"
    else:
        shown = ", ".join(fields[:_MAX_FIELDS_IN_MESSAGE])
        more = ", ..." if len(fields) > _MAX_FIELDS_IN_MESSAGE else ""
        message = f"{len(problems)} invalid parameters: {shown}{more}"
    raise ValidationError(
        message,
        details={
            "field": first["field"],
            "expected": first["expected"],
            "received": first["received"],
            "errors": problems,
        },
    )


def _errors_of(exc: ValidationError) -> list[dict[str, str]]:
    details = exc.details if isinstance(exc.details, dict) else {}
    found = details.get("errors")
    if found:
        return list(found)
    field = str(details.get("field", "body"))
    return [
        _problem(
            field,
            str(details.get("expected", "")),
            str(details.get("received", "")),
            exc.message,
        )
    ]


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _check_text(
    extract: _Extract, text: str, problems: list[dict[str, str]]
) -> Any:  # returns MISSING when the value is bad
    _, key, coerce, query, _, _, _, item = extract
    try:
        value = coerce(item, text, key)
    except ValidationError as exc:
        problems.extend(_errors_of(exc))
        return MISSING
    if query is not None:
        for issue in query.check(key, value):
            expected = issue.removeprefix("must ").removeprefix("be ")
            problems.append(_problem(key, expected, _shown(text), f"{key}: {issue}"))
    return value


def _marshmallow_loader(schema: Any) -> Callable[[Any], Any]:
    from marshmallow import ValidationError as MarshmallowError

    def load(value: Any) -> Any:
        try:
            return schema.load(value)
        except MarshmallowError as exc:
            problems = _marshmallow_problems(schema, exc.messages, value, "body")
            _raise_problems(problems or [_problem("body", "object", "invalid", str(exc))])
        return None  # pragma: no cover - _raise_problems always raises

    return load


def _marshmallow_problems(
    schema: Any, messages: Any, value: Any, prefix: str
) -> list[dict[str, str]]:
    """marshmallow's nested ``{field: [messages]}`` as flat problems naming ``body.<field>``."""
    if isinstance(messages, list):
        text = "; ".join(str(m) for m in messages)
        return [_problem(prefix, "object", received_type_name(value), f"{prefix}: {text}")]
    problems: list[dict[str, str]] = []
    fields = getattr(schema, "fields", {}) or {}
    for key, inner in messages.items():
        if key == "_schema":
            problems.extend(_marshmallow_problems(None, inner, value, prefix))
            continue
        field = f"{prefix}.{key}" if isinstance(key, str) else f"{prefix}[{key}]"
        present = isinstance(value, Mapping) and key in value
        sub = value.get(key) if isinstance(value, Mapping) else None
        declared = fields.get(key) if isinstance(key, str) else None
        if isinstance(inner, dict) and declared is not None:
            nested = getattr(declared, "schema", None)
            problems.extend(_marshmallow_problems(nested, inner, sub, field))
            continue
        text = "; ".join(str(m) for m in inner) if isinstance(inner, list) else str(inner)
        if declared is None:
            expected = "nothing"
        else:
            expected = _MARSHMALLOW_TYPES.get(type(declared).__name__, "valid value")
        received = received_type_name(sub) if present else "missing"
        problems.append(_problem(field, expected, received, f"{field}: {text}"))
    return problems


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
    plan = _analyze(spec, rate_limit)
    fn = spec.handler
    limits = nexus.security_limits()
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
                problems.append(_problem("body", "object", "missing", "Missing request body"))
            else:
                kwargs[body.name] = body.default
            return
        check_payload(value, limits, path="body")
        try:
            kwargs[body.name] = load_body(value)
        except ValidationError as exc:
            problems.extend(_errors_of(exc))

    async def handler(request: web.Request) -> web.StreamResponse:
        kwargs: dict[str, Any] = {}
        problems: list[dict[str, str]] = []
        if path_plan:
            match_info = request.match_info
            for extract in path_plan:
                kwargs[extract[0]] = _check_text(extract, match_info[extract[1]], problems)
        if query_plan:
            query = request.query
            for extract in query_plan:
                name, key, _, _, default, required, many, _ = extract
                if many:
                    texts = query.getall(key, ())
                    if texts:
                        kwargs[name] = [_check_text(extract, t, problems) for t in texts]
                        continue
                else:
                    text = query.get(key)
                    if text is not None:
                        kwargs[name] = _check_text(extract, text, problems)
                        continue
                if required:
                    problems.append(
                        _problem(
                            key,
                            _expected(extract),
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
            _raise_problems(problems)
        if request_arg is not None:
            kwargs[request_arg] = request
        if is_async:
            result = await fn(**kwargs)
        else:
            runtime = nexus.runtime
            if runtime is None:  # pragma: no cover - routes only run while the runtime is up
                raise RuntimeError("endpoint called while the app is not running")
            result = await runtime.run_sync_fn(functools.partial(fn, **kwargs))
            if inspect.isawaitable(result):
                result = await result
        return _response(result)

    handler.__name__ = handler.__qualname__ = f"endpoint_{plan.info.name}"
    handler.__doc__ = plan.info.description
    handler.nexus_rate_limit = rate_limit  # type: ignore[attr-defined]
    handler.nexus_endpoint = plan.info  # type: ignore[attr-defined]
    return handler


def _expected(extract: _Extract) -> str:
    schema = type_json_schema(extract[7])
    kind = schema.get("type")
    return kind if isinstance(kind, str) else "value"


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
