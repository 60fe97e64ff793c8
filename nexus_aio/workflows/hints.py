"""Reading type hints: the wrappers that do not change a JSON shape, and the fields of
dataclasses, TypedDicts and callables."""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Union

from nexus_aio.errors import RegistrationError

__all__ = [
    "accepts_none",
    "callable_hints",
    "dataclass_defaults",
    "enum_list_text",
    "is_dataclass_type",
    "is_enum_type",
    "is_typeddict",
    "is_union",
    "literal_json_value",
    "object_fields",
    "strip_annotation",
]


def strip_annotation(annotation: Any) -> tuple[Any, str | None]:
    """Drop wrappers that do not change the JSON shape: Annotated (a plain string in its metadata
    becomes the description), Required/NotRequired, NewType, and "no annotation" (Any)."""
    description = None
    while True:
        if annotation is inspect.Parameter.empty or annotation is object:
            return Any, description
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            args = typing.get_args(annotation)
            annotation = args[0]
            if description is None:
                description = next((m for m in args[1:] if isinstance(m, str)), None)
        elif origin is typing.Required or origin is typing.NotRequired:
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, typing.NewType):
            annotation = annotation.__supertype__
        else:
            return annotation, description


def accepts_none(annotation: Any) -> bool:
    """Whether ``None`` (JSON null) is a value of ``annotation``: ``Any``, ``None``, an
    ``Optional``/union with ``None`` or a ``Literal`` holding ``None``."""
    annotation, _ = strip_annotation(annotation)
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    if is_union(origin):
        return any(accepts_none(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return None in typing.get_args(annotation)
    return False


def is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def is_typeddict(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing.is_typeddict(annotation)


def is_dataclass_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def is_enum_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def literal_json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def enum_list_text(values: Iterable[Any]) -> str:
    return "one of " + json.dumps([literal_json_value(v) for v in values], default=str)


def _object_hints(cls: type, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError, TypeError from unresolvable forward references
        raise RegistrationError(
            f"{where}: cannot resolve the type hints of {cls.__name__}: {exc}"
        ) from None


def object_fields(cls: type, where: str) -> list[tuple[str, Any, bool]]:
    """(name, annotation, required) of a dataclass's init fields or a TypedDict's keys."""
    hints = _object_hints(cls, where)
    if is_dataclass_type(cls):
        return [
            (
                f.name,
                hints.get(f.name, Any),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
            if f.init
        ]
    required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    return [
        (name, hint, _typeddict_key_required(hint, name in required_keys))
        for name, hint in hints.items()
    ]


def _typeddict_key_required(hint: Any, declared: bool) -> bool:
    """Required/NotRequired decide; ``__required_keys__`` misses them when annotations are
    strings (``from __future__ import annotations`` on Python 3.11)."""
    origin = typing.get_origin(hint)
    while origin is typing.Annotated:
        hint = typing.get_args(hint)[0]
        origin = typing.get_origin(hint)
    if origin is typing.Required:
        return True
    if origin is typing.NotRequired:
        return False
    return declared


def callable_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``fn`` (partials, classes and callable objects included); names
    whose annotation cannot be resolved keep the string so the caller can decide."""
    owner: Any = fn
    while isinstance(owner, functools.partial):
        owner = owner.func
    if inspect.isclass(owner):
        owner = owner.__init__
    elif not inspect.isroutine(owner) and callable(owner):
        owner = type(owner).__call__
    try:
        return typing.get_type_hints(owner, include_extras=True)
    except Exception:  # one bad forward reference must not hide the others
        pass
    target = inspect.unwrap(owner)
    raw = dict(getattr(target, "__annotations__", {}) or {})
    namespace = getattr(target, "__globals__", {})
    hints = {}
    for name, annotation in raw.items():
        holder = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints[name] = typing.get_type_hints(holder, globalns=namespace, include_extras=True)[
                name
            ]
        except Exception:
            hints[name] = annotation if isinstance(annotation, str) else repr(annotation)
    return hints


def dataclass_defaults(cls: type) -> dict[str, Any]:
    if not is_dataclass_type(cls):
        return {}
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }
