"""JSON Schema (OpenAPI 3.1) of an annotation: ``{}`` (anything) for what it cannot describe."""

from __future__ import annotations

import typing
from types import NoneType
from typing import Any, Final, Literal

from nexus_aio.errors import RegistrationError
from nexus_aio.workflows.defs import hoist_to_root
from nexus_aio.workflows.files import File
from nexus_aio.workflows.hints import (
    dataclass_defaults,
    is_dataclass_type,
    is_enum_type,
    is_typeddict,
    is_union,
    literal_json_value,
    object_fields,
    strip_annotation,
)
from nexus_aio.workflows.jsontypes import JSON_TYPE_NAMES, MISSING, json_type_name, jsonable
from nexus_aio.workflows.models import is_model_type, model_json_schema

__all__ = ["add_annotations", "type_json_schema"]


def type_json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation; ``{}`` (anything) for what it cannot describe.

    The ``$defs`` of pydantic models anywhere inside are gathered at its root."""
    return hoist_to_root(_json_schema(annotation, frozenset()))


def _json_schema(annotation: Any, seen: frozenset[type]) -> dict[str, Any]:
    annotation, _ = strip_annotation(annotation)
    if annotation is Any:
        return {}
    if annotation is None or annotation is NoneType:
        return {"type": "null"}
    if annotation is File:  # a multipart part, as OpenAPI describes file uploads
        return {"type": "string", "format": "binary"}
    simple = JSON_TYPE_NAMES.get(annotation) if isinstance(annotation, type) else None
    if simple is not None:
        return {"type": simple}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is not None:
        return _generic_json_schema(origin, args, seen)
    if is_enum_type(annotation):
        values = [m.value for m in annotation]
        return {**_common_type(values), "enum": values, "title": annotation.__name__}
    if is_dataclass_type(annotation) or is_typeddict(annotation):
        return _object_json_schema(annotation, seen)
    if is_model_type(annotation):
        return model_json_schema(annotation)
    return {}


_ITERATOR_ORIGINS: Final = frozenset(
    {
        typing.get_origin(t)
        for t in (
            typing.AsyncIterator[int],
            typing.AsyncGenerator[int, None],
            typing.AsyncIterable[int],
            typing.Iterator[int],
            typing.Generator[int, None, None],
            typing.Iterable[int],
            typing.Sequence[int],
        )
    }
)


def _generic_json_schema(
    origin: Any, args: tuple[Any, ...], seen: frozenset[type]
) -> dict[str, Any]:
    if origin is list or origin is tuple or origin in _ITERATOR_ORIGINS:
        schema: dict[str, Any] = {"type": "array"}
        item = (
            args[0]
            if args and (origin is not tuple or args[-1] is Ellipsis or len(set(args)) == 1)
            else Any
        )
        item_schema = _json_schema(item, seen)
        if item_schema:
            schema["items"] = item_schema
        return schema
    if origin is dict or origin is typing.get_origin(typing.Mapping[str, int]):
        schema = {"type": "object"}
        value_schema = _json_schema(args[1], seen) if len(args) == 2 else {}
        if value_schema:
            schema["additionalProperties"] = value_schema
        return schema
    if origin is Literal:
        values = [literal_json_value(v) for v in args]
        return {**_common_type(values), "enum": values}
    if is_union(origin):
        branches = [_json_schema(a, seen) for a in args if a is not NoneType]
        if any(not b for b in branches):
            return {}
        if NoneType in args:
            branches.append({"type": "null"})
        return {"anyOf": branches}
    return {}


def _common_type(values: list[Any]) -> dict[str, str]:
    names = {json_type_name(v) for v in values}
    return {"type": names.pop()} if len(names) == 1 else {}


def _object_json_schema(cls: type, seen: frozenset[type]) -> dict[str, Any]:
    if cls in seen:  # recursive type: stop here rather than loop
        return {"type": "object", "title": cls.__name__}
    seen = seen | {cls}
    try:
        fields = object_fields(cls, cls.__name__)
    except RegistrationError:
        return {"type": "object", "title": cls.__name__}
    defaults = dataclass_defaults(cls)
    properties = {}
    for name, annotation, required in fields:
        prop = _json_schema(annotation, seen)
        default = defaults.get(name, MISSING)
        add_annotations(prop, required, default, strip_annotation(annotation)[1])
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": properties}
    required_names = [name for name, _, required in fields if required]
    if required_names:
        schema["required"] = required_names
    schema["additionalProperties"] = False
    return schema


def add_annotations(
    schema: dict[str, Any], required: bool, default: Any, description: str | None
) -> None:
    if description:
        schema["description"] = description
    if not required and default is not MISSING:
        value = jsonable(default)
        if value is not MISSING:
            schema["default"] = value
