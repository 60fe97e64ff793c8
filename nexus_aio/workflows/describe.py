"""The ``/schema`` format: the spec's compact per-input description and the workflow's outputs."""

from __future__ import annotations

import inspect
from typing import Any

from nexus_aio.workflows.defs import inline_refs
from nexus_aio.workflows.hints import callable_hints
from nexus_aio.workflows.jsonschema import type_json_schema
from nexus_aio.workflows.jsontypes import MISSING, jsonable
from nexus_aio.workflows.models import output_json_schema

__all__ = ["describe_field", "output_schema"]


def describe_field(
    schema: dict[str, Any], required: bool, default: Any, description: str | None
) -> dict[str, Any]:
    if "$defs" in schema:  # pydantic models: their references resolved for the compact form
        out = _describe_type(inline_refs(schema))
    else:
        out = _describe_type(schema)
    out["required"] = required
    if not required:
        value = jsonable(default)
        if value is not MISSING:
            out["default"] = value
    if description:
        out["description"] = description
    return out


def _describe_type(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema -> the spec's compact ``{"type": ..., "required": ...}`` style."""
    if "anyOf" in schema:
        return _describe_union(schema["anyOf"])
    out: dict[str, Any] = {"type": schema.get("type", "any")}
    if "format" in schema:
        out["format"] = schema["format"]
    if "enum" in schema:
        out["enum"] = schema["enum"]
    if "items" in schema:
        out["items"] = _describe_type(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _describe_type(schema["additionalProperties"])
    if "properties" in schema:
        required = set(schema.get("required", ()))
        out["properties"] = {
            name: _describe_property(prop, name in required)
            for name, prop in schema["properties"].items()
        }
    return out


def _describe_property(prop: dict[str, Any], required: bool) -> dict[str, Any]:
    out = _describe_type(prop)
    out["required"] = required
    if "default" in prop:
        out["default"] = prop["default"]
    if "description" in prop:
        out["description"] = prop["description"]
    return out


def _describe_union(branches: list[dict[str, Any]]) -> dict[str, Any]:
    nullable = {"type": "null"} in branches
    rest = [b for b in branches if b != {"type": "null"}]
    if len(rest) == 1:
        out = _describe_type(rest[0])
    else:
        described = [_describe_type(b) for b in rest]
        out = {"type": [d["type"] for d in described], "anyOf": described}
    if nullable:
        out["nullable"] = True
    return out


def output_schema(fn: Any) -> dict[str, Any]:
    """The ``/schema`` "outputs": ``{"result": <JSON Schema of the return annotation>}``.

    No annotation gives ``{"result": {}}`` (anything). A generator's result is its chunks, so
    ``AsyncIterator[str]`` describes an array of strings. Dataclasses and TypedDicts describe
    their fields; a pydantic model (or a type holding models) is described as pydantic
    serialises it, the models' ``$defs`` at the root of the result's schema.
    """
    hints = callable_hints(fn) if callable(fn) else {}
    returned = hints.get("return", inspect.Parameter.empty)
    if isinstance(returned, str):
        return {"result": {}}
    models = output_json_schema(returned)
    if models is not None:
        return {"result": models}
    return {"result": type_json_schema(returned)}
