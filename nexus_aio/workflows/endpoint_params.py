"""What a custom endpoint's function accepts, worked out once from its signature.

``@app.endpoint(path, methods, rate_limit)`` functions are read here when the app is built
(:func:`plan_endpoint`); the web layer (:mod:`nexus_aio.web.endpoints`) then runs the prepared
plan per request. Nothing here imports aiohttp: which annotation is "the request" is the caller's
``is_request`` predicate. Each parameter of the decorated function is, in this order of precedence:

* the request: an annotation ``is_request`` accepts (the web layer: ``aiohttp.web.BaseRequest``);
* a path parameter: its name appears in the path template (``/items/{item_id}``); the text is
  coerced to the annotation (:func:`nexus_aio.workflows.coerce.coerce_text`);
* the JSON body: annotated ``dict`` (``dict[str, X]``, a ``TypedDict``), a dataclass, or a
  marshmallow ``Schema`` subclass or instance. At most one. The dataclass/dict is checked like
  workflow inputs, the marshmallow schema loads it. Without a default it is required;
* otherwise a query parameter: coerced to the annotation; ``list[X]`` reads repeated keys
  (``?tag=a&tag=b``); the default may be a ``Query(default, pattern=..., ge=..., le=...,
  max_length=...)`` declaring constraints; no default (or ``Query(...)``) means required.

Bad parameters raise one ``ValidationError`` (400) listing every problem with the same
``details`` shape as workflow validation: ``field``/``expected``/``received`` of the first one
and an ``errors`` list.

The metadata (:class:`EndpointInfo`) is what OpenAPI documents: ``path`` (as declared, without
``api_prefix``), ``methods``, ``name``, ``description`` (the docstring), ``parameters``
(``EndpointParam``: ``name``, ``location`` "path"/"query", ``schema`` (JSON Schema with
constraints and default folded in), ``required``, ``default``, ``constraints`` (JSON Schema
keywords: ``pattern``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
``minLength``, ``maxLength``), ``description``), ``body`` (``EndpointBody`` or None: ``kind``
"json"/"dataclass"/"marshmallow", ``schema`` (JSON Schema, None for marshmallow), ``marshmallow``
(the ``Schema`` instance or None), ``required``) and ``rate_limit``; ``body_schema`` is the body's
JSON Schema or marshmallow schema. :meth:`EndpointInfo.to_dict` gives it all as plain JSON.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nexus_aio.errors import RegistrationError, ValidationError
from nexus_aio.query import Query
from nexus_aio.workflows.coerce import coerce_text
from nexus_aio.workflows.endpoint_problems import (
    errors_of,
    marshmallow_loader,
    problem,
)
from nexus_aio.workflows.hints import callable_hints
from nexus_aio.workflows.inputs import InputField, InputSchema
from nexus_aio.workflows.jsonschema import type_json_schema
from nexus_aio.workflows.jsontypes import MISSING

if TYPE_CHECKING:
    from nexus_aio.nexus import EndpointSpec

__all__ = [
    "EndpointBody",
    "EndpointInfo",
    "EndpointParam",
    "EndpointPlan",
    "Extract",
    "check_text",
    "expected_type",
    "path_variables",
    "plan_endpoint",
]

_PATH_VAR = re.compile(r"\{([_a-zA-Z][_a-zA-Z0-9]*)(?=[:}])")


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
Extract = tuple[str, str, Any, Query | None, Any, bool, bool, Any]


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    info: EndpointInfo
    request_arg: str | None
    path: tuple[Extract, ...]
    query: tuple[Extract, ...]
    body: EndpointBody | None
    body_loader: Callable[[Any], Any] | None
    is_async: bool


# -- analysis (once, at build) -----------------------------------------------------------------
def path_variables(path: str) -> list[str]:
    """The ``{name}`` / ``{name:regex}`` variables of an aiohttp path template, in order."""
    return _PATH_VAR.findall(path)


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
) -> tuple[Extract, EndpointParam]:
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
        return body, marshmallow_loader(schema)
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


def plan_endpoint(
    spec: EndpointSpec, rate_limit: int, is_request: Callable[[Any], bool]
) -> EndpointPlan:
    """The per-request plan of one endpoint (raises ``RegistrationError`` for a bad signature);
    ``is_request(annotation)`` says which parameter receives the request itself."""
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
    path: list[Extract] = []
    query: list[Extract] = []
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
        if is_request(annotation):
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
    return EndpointPlan(
        info,
        request_arg,
        tuple(path),
        tuple(query),
        body[0] if body else None,
        body[1] if body else None,
        _is_async(fn),
    )


# -- per request: one text parameter ----------------------------------------------------------
def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def check_text(extract: Extract, text: str, problems: list[dict[str, str]]) -> Any:
    """The parameter's text coerced and checked against its ``Query`` constraints; ``MISSING``
    (with the problems appended) when it is bad."""
    _, key, coerce, query, _, _, _, item = extract
    try:
        value = coerce(item, text, key)
    except ValidationError as exc:
        problems.extend(errors_of(exc))
        return MISSING
    if query is not None:
        for issue in query.check(key, value):
            expected = issue.removeprefix("must ").removeprefix("be ")
            problems.append(problem(key, expected, _shown(text), f"{key}: {issue}"))
    return value


def expected_type(extract: Extract) -> str:
    """The JSON type a missing parameter should have had, for its problem's ``expected``."""
    schema = type_json_schema(extract[7])
    kind = schema.get("type")
    return kind if isinstance(kind, str) else "value"
