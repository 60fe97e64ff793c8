"""Operations for routes the core does not know: custom endpoints (from the metadata the
endpoint layer records on ``handler.nexus_endpoint``) and any other plugin route (a minimal
operation from its path and docstring)."""

from __future__ import annotations

import inspect
from typing import Any

from nexus_aio.openapi.components import error_response, error_responses, path_params
from nexus_aio.openapi.routes import RouteInfo

__all__ = ["endpoint_operation", "minimal_operation"]

CONSTRAINT_KEYWORDS = {
    "pattern": "pattern",
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "min_length": "minLength",
    "max_length": "maxLength",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "exclusiveMinimum": "exclusiveMinimum",
    "exclusiveMaximum": "exclusiveMaximum",
}


def minimal_operation(route: RouteInfo) -> dict[str, Any]:
    """Path parameters, the handler's docstring and the error envelope."""
    doc = inspect.getdoc(route.handler)
    operation: dict[str, Any] = {
        "tags": ["plugins"],
        "responses": {"200": {"description": "Success"}, **error_responses(400, 404, 500)},
    }
    summary = _first_line(doc)
    if summary:
        operation["summary"] = summary
        operation["description"] = doc
    params = path_params(route.path)
    if params:
        operation["parameters"] = params
    return operation


def endpoint_operation(route: RouteInfo, meta: Any) -> dict[str, Any]:
    """A custom endpoint from the metadata the endpoints layer attaches to its handler."""
    doc = _field(meta, "description") or inspect.getdoc(route.handler)
    params = []
    for param in _field(meta, "parameters") or ():
        params.append(_endpoint_param(param))
    documented = {p["name"] for p in params if p["in"] == "path"}
    params += [p for p in path_params(route.path) if p["name"] not in documented]
    operation: dict[str, Any] = {
        "tags": ["endpoints"],
        "responses": {"200": {"description": "Success"}, **error_responses(400, 404, 429, 500)},
    }
    summary = _first_line(doc)
    if summary:
        operation["summary"] = summary
        operation["description"] = doc
    if params:
        operation["parameters"] = params
    # A JSON Schema dict, or a marshmallow schema that the MarshmallowPlugin resolves.
    body = _field(meta, "body_schema", "body")
    if body is not None and route.method in ("POST", "PUT", "PATCH"):
        body_info = _field(meta, "body")
        required = _field(body_info, "required") if body_info is not None else None
        operation["requestBody"] = {
            "required": required is not False,
            "content": {"application/json": {"schema": body}},
        }
        operation["responses"]["413"] = error_response(413)
    return operation


def _first_line(text: str | None) -> str | None:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else None


def _field(obj: Any, *names: str) -> Any:
    """Read metadata from an object or a mapping, whichever the endpoints layer supplies."""
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


def _endpoint_param(param: Any) -> dict[str, Any]:
    location = _field(param, "in", "in_", "location", "source") or "query"
    raw = _field(param, "schema", "json_schema", "type")
    schema = dict(raw) if isinstance(raw, dict) else {"type": raw} if isinstance(raw, str) else {}
    constraints = _field(param, "constraints")
    for key, value in (constraints if isinstance(constraints, dict) else {}).items():
        keyword = CONSTRAINT_KEYWORDS.get(key)
        if keyword is not None and value is not None:
            schema[keyword] = value
    required = bool(_field(param, "required")) or location == "path"
    default = _field(param, "default")
    if not required and default is not None and _is_json_scalar(default):
        schema.setdefault("default", default)
    out: dict[str, Any] = {
        "name": str(_field(param, "name")),
        "in": location,
        "required": required,
        "schema": schema,
    }
    description = _field(param, "description")
    if description:
        out["description"] = description
    return out


def _is_json_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
