"""JSON values as a client sees them: their type names, plain-JSON copies, and ``MISSING``."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Mapping
from types import NoneType
from typing import Any, Final

__all__ = ["JSON_TYPE_NAMES", "MISSING", "json_type_name", "jsonable", "received_type_name"]


class _Missing:
    """The type of ``MISSING``: a falsy-free, copy-safe singleton meaning "no default"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # copy/pickle give back the singleton


MISSING: Final[Any] = _Missing()

JSON_TYPE_NAMES: Final[dict[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
    NoneType: "null",
}


def json_type_name(value: Any) -> str:
    """The JSON type of ``value`` ("string", "integer", ...); the Python type name if not JSON."""
    name = JSON_TYPE_NAMES.get(value.__class__)
    if name is not None:
        return name
    for cls, cls_name in JSON_TYPE_NAMES.items():
        if isinstance(value, cls):
            return cls_name
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def received_type_name(value: Any) -> str:
    """The JSON type of ``value`` as a client sees it, for "received" in error details.

    JSON (RFC 8259) has one number type, so ``123`` and ``1.5`` are both "number" here (as in
    the spec's example); "integer" only appears as an expectation.
    """
    name = json_type_name(value)
    return "number" if name == "integer" else name


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON (enums by value, dataclasses and pydantic models as objects), or
    ``MISSING``."""

    def convert(obj: Any) -> Any:
        if isinstance(obj, enum.Enum):
            return obj.value
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        pydantic = sys.modules.get("pydantic")  # a model default, without importing pydantic
        if pydantic is not None and isinstance(obj, pydantic.BaseModel):
            return obj.model_dump(mode="json")
        raise TypeError

    try:
        return json.loads(json.dumps(value, default=convert, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return MISSING
