"""marshmallow schemas mirroring workflow inputs, for apispec's MarshmallowPlugin.

Documentation only: requests are checked by ``InputSchema.validate``, which is strict and faster.
marshmallow is imported on first use, so a process that never builds a document never loads it.
"""

from __future__ import annotations

import typing
from types import NoneType
from typing import Any, Literal

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
from nexus_aio.workflows.jsontypes import MISSING, jsonable

__all__ = ["marshmallow_field"]


_marshmallow_objects: dict[type, type | None] = {}


def marshmallow_field(
    annotation: Any, required: bool, default: Any, description: str | None
) -> Any:
    from marshmallow import fields

    field_type, kwargs = _marshmallow_type(annotation)
    metadata: dict[str, Any] = {}
    if description:
        metadata["description"] = description
    if required:
        kwargs["required"] = True
    elif default is not MISSING:
        value = jsonable(default)
        if value is not MISSING:
            metadata["default"] = value
    if metadata:
        kwargs["metadata"] = metadata
    return field_type(**kwargs) if field_type is not None else fields.Raw(**kwargs)


def _marshmallow_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """(field class or a ready-made factory, kwargs) for one annotation."""
    from marshmallow import fields, validate

    annotation, _ = strip_annotation(annotation)
    simple = {str: fields.String, float: fields.Float, bool: fields.Boolean}.get(annotation)
    if simple is not None:
        return simple, {}
    if annotation is int:
        return fields.Integer, {"strict": True}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is list or origin is list:
        inner = marshmallow_field(args[0], False, MISSING, None) if args else fields.Raw()
        return fields.List, {"cls_or_instance": inner}
    if annotation is dict or origin is dict:
        values = marshmallow_field(args[1], False, MISSING, None) if args else fields.Raw()
        return fields.Dict, {"keys": fields.String(), "values": values}
    if origin is Literal:
        values = [literal_json_value(v) for v in args]
        kind = fields.String if all(isinstance(v, str) for v in values) else fields.Raw
        return kind, {"validate": validate.OneOf(values)}
    if is_union(origin):
        rest = [a for a in args if a is not NoneType]
        if len(rest) == 1:
            field_type, kwargs = _marshmallow_type(rest[0])
            return field_type, {**kwargs, "allow_none": True}
        return fields.Raw, {"allow_none": NoneType in args}
    if is_enum_type(annotation):
        return fields.Enum, {"enum": annotation, "by_value": True}
    if is_dataclass_type(annotation) or is_typeddict(annotation):
        return fields.Nested, {"nested": _marshmallow_object(annotation)}
    return fields.Raw, {}


def _marshmallow_object(cls: type) -> Any:
    """One schema class per dataclass/TypedDict, shared by every workflow that uses it, so
    apispec sees one component per type. Recursive types refer to themselves lazily."""
    if cls in _marshmallow_objects:
        cached = _marshmallow_objects[cls]
        return cached if cached is not None else (lambda: _marshmallow_objects[cls])
    from marshmallow import Schema

    _marshmallow_objects[cls] = None  # being built
    try:
        defaults = dataclass_defaults(cls)
        declared = {
            name: marshmallow_field(ann, required, defaults.get(name, MISSING), None)
            for name, ann, required in object_fields(cls, cls.__name__)
        }
        schema = Schema.from_dict(declared, name=f"{cls.__name__}Schema")
    except BaseException:
        del _marshmallow_objects[cls]
        raise
    _marshmallow_objects[cls] = schema
    return schema
