"""Annotations compiled, once at registration, into small checking closures.

A request then costs one closure call per input instead of a walk over ``typing`` objects.
Checking is strict about JSON types (``"3"``, ``1.5`` and ``true`` are not integers) because
silently coercing would hide client bugs.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from types import NoneType
from typing import Any, Final, Literal

from nexus_aio.errors import RegistrationError
from nexus_aio.workflows.files import File
from nexus_aio.workflows.hints import (
    enum_list_text,
    is_dataclass_type,
    is_enum_type,
    is_typeddict,
    is_union,
    literal_json_value,
    object_fields,
    strip_annotation,
)
from nexus_aio.workflows.jsontypes import MISSING, received_type_name
from nexus_aio.workflows.models import is_model_type, model_check
from nexus_aio.workflows.problems import Problem, add_segment, type_problem

__all__ = ["Check", "Compiled", "Compiler", "accept_any"]

_SCALARS: Final = frozenset({str, int, float, bool, NoneType})

Check = Callable[[Any, list[Problem]], Any]
"""A compiled check: returns the (possibly converted) value, appends problems to the list."""


class Compiled:
    """A compiled annotation. ``converts`` says whether ``check`` may return a different object
    (a dataclass built, an enum member looked up); containers of non-converting types skip
    building a copy."""

    __slots__ = ("check", "converts", "expected")

    def __init__(self, check: Check | None, expected: str, converts: bool) -> None:
        self.check = check  # None only while a recursive dataclass/TypedDict is being compiled
        self.expected = expected
        self.converts = converts


def accept_any(value: Any, problems: list[Problem]) -> Any:
    return value


def _check_str(value: Any, problems: list[Problem]) -> Any:
    if not isinstance(value, str):
        problems.append(type_problem("string", value))
    return value


def _check_int(value: Any, problems: list[Problem]) -> Any:
    if not isinstance(value, int) or value.__class__ is bool:
        problems.append(type_problem("integer", value))
    return value


def _check_float(value: Any, problems: list[Problem]) -> Any:
    if value.__class__ is float:
        return value
    if isinstance(value, int | float) and value.__class__ is not bool:
        try:
            return float(value)
        except OverflowError:
            problems.append(Problem("invalid", "number", "number", "too large for a number"))
            return value
    problems.append(type_problem("number", value))
    return value


def _check_bool(value: Any, problems: list[Problem]) -> Any:
    if value is not True and value is not False:
        problems.append(type_problem("boolean", value))
    return value


def _check_null(value: Any, problems: list[Problem]) -> Any:
    if value is not None:
        problems.append(type_problem("null", value))
    return value


def _check_list(value: Any, problems: list[Problem]) -> Any:
    if not isinstance(value, list):
        problems.append(type_problem("array", value))
    return value


def _check_file(value: Any, problems: list[Problem]) -> Any:
    # Only a multipart part makes a File: a JSON value (or a client's File object) is refused.
    if value.__class__ is not File:
        problems.append(type_problem("file", value))
    return value


def _check_dict(value: Any, problems: list[Problem]) -> Any:
    if not isinstance(value, dict):
        problems.append(type_problem("object", value))
    return value


_SIMPLE: Final[dict[Any, Compiled]] = {
    Any: Compiled(accept_any, "any", False),
    str: Compiled(_check_str, "string", False),
    int: Compiled(_check_int, "integer", False),
    float: Compiled(_check_float, "number", True),
    bool: Compiled(_check_bool, "boolean", False),
    None: Compiled(_check_null, "null", False),
    NoneType: Compiled(_check_null, "null", False),
    list: Compiled(_check_list, "array", False),
    dict: Compiled(_check_dict, "object", False),
    File: Compiled(_check_file, "file", False),
}


def _late_bound(node: Compiled) -> Check:
    """A check for a type still being compiled (a recursive dataclass refers to itself)."""

    def check(value: Any, problems: list[Problem]) -> Any:
        assert node.check is not None
        return node.check(value, problems)

    return check


class Compiler:
    """Compiles annotations to checks. One per schema; remembers objects being compiled so
    recursive dataclasses and TypedDicts terminate."""

    def __init__(self) -> None:
        self._objects: dict[type, Compiled] = {}

    def compile(self, annotation: Any, where: str) -> Compiled:
        annotation, _ = strip_annotation(annotation)
        try:
            simple = _SIMPLE.get(annotation)
        except TypeError:  # an unhashable annotation object
            simple = None
        if simple is not None:
            return simple
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is list:
            return self._list(args, where)
        if origin is dict:
            return self._dict(args, where)
        if origin is Literal:
            return self._literal(args)
        if is_union(origin):
            return self._union(args, where)
        if origin is None:
            if is_enum_type(annotation):
                return self._enum(annotation, where)
            if is_dataclass_type(annotation) or is_typeddict(annotation):
                return self._object(annotation, where)
            if is_model_type(annotation):  # pydantic: the model's own validation
                return Compiled(model_check(annotation), "object", True)
        raise RegistrationError(
            f"{where}: unsupported type annotation {_type_repr(annotation)}; use str, int, float, "
            "bool, list, list[T], dict, dict[str, T], Optional[T], Literal[...], Any, "
            "a dataclass, a TypedDict, a str/int Enum, a pydantic model or nexus_aio.File"
        )

    def _list(self, args: tuple[Any, ...], where: str) -> Compiled:
        item = self.compile(args[0], where) if args else _SIMPLE[Any]
        if item.check is accept_any:
            return _SIMPLE[list]
        return Compiled(_list_check(item), "array", item.converts)

    def _dict(self, args: tuple[Any, ...], where: str) -> Compiled:
        if args:
            key = strip_annotation(args[0])[0]
            if key is not str and key is not Any:
                raise RegistrationError(
                    f"{where}: dict keys must be str (JSON object keys are strings), "
                    f"got {_type_repr(key)}"
                )
        value = self.compile(args[1], where) if len(args) == 2 else _SIMPLE[Any]
        if value.check is accept_any:
            return _SIMPLE[dict]
        return Compiled(_dict_check(value), "object", value.converts)

    def _literal(self, values: tuple[Any, ...]) -> Compiled:
        allowed: dict[tuple[type, Any], Any] = {}
        for value in values:
            allowed[_value_key(literal_json_value(value))] = value
            allowed[_value_key(value)] = value
        expected = enum_list_text(values)
        converts = any(isinstance(v, enum.Enum) for v in values)
        return Compiled(_lookup_check(allowed, expected, None), expected, converts)

    def _enum(self, cls: type[enum.Enum], where: str) -> Compiled:
        members = list(cls)
        for member in members:
            if member.value.__class__ not in (str, int):
                raise RegistrationError(
                    f"{where}: enum {cls.__name__} must have str or int values "
                    f"({member.name} = {member.value!r})"
                )
        allowed = {_value_key(m.value): m for m in members}
        expected = enum_list_text(members)
        return Compiled(_lookup_check(allowed, expected, cls), expected, True)

    def _union(self, args: tuple[Any, ...], where: str) -> Compiled:
        nullable = NoneType in args
        branches = [self.compile(a, where) for a in args if a is not NoneType]
        if any(b.check is accept_any for b in branches):
            return _SIMPLE[Any]
        converts = any(b.converts for b in branches)
        if len(branches) == 1:
            inner = branches[0]
            return Compiled(_optional_check(inner), f"{inner.expected} or null", inner.converts)
        expected = " or ".join([b.expected for b in branches] + (["null"] if nullable else []))
        return Compiled(_union_check(branches, nullable, expected), expected, converts)

    def _object(self, cls: type, where: str) -> Compiled:
        known = self._objects.get(cls)
        if known is not None:
            if known.check is None:
                return Compiled(_late_bound(known), "object", True)
            return known
        node = Compiled(None, "object", True)
        self._objects[cls] = node
        plan = []
        for name, annotation, required in object_fields(cls, where):
            compiled = self.compile(annotation, f"{where}, field {cls.__name__}.{name}")
            assert compiled.check is not None  # a recursive reference is late-bound
            plan.append((name, compiled.check, compiled.expected, required))
        build = cls if is_dataclass_type(cls) else None
        node.check = _object_check(cls.__name__, plan, build)
        return node


def _type_repr(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation)


def _value_key(value: Any) -> tuple[type, Any]:
    """A lookup key that keeps ``1``, ``1.0`` and ``True`` apart (they are equal in Python)."""
    return (value.__class__, value)


def _list_check(item: Compiled) -> Check:
    item_check = item.check
    assert item_check is not None
    converts = item.converts

    def check(value: Any, problems: list[Problem]) -> Any:
        if not isinstance(value, list):
            problems.append(type_problem("array", value))
            return value
        start = len(problems)
        if converts:
            out = [item_check(x, problems) for x in value]
        else:
            for x in value:
                item_check(x, problems)
            out = value
        if len(problems) != start:
            _locate_items(item_check, value, problems, start)
        return out

    return check


def _locate_items(item_check: Check, items: list[Any], problems: list[Problem], start: int) -> None:
    """Re-run a failed list's items one by one to give each problem its index. Only on the error
    path, so the success path needs no per-item bookkeeping."""
    del problems[start:]
    for index, item in enumerate(items):
        before = len(problems)
        item_check(item, problems)
        if len(problems) != before:
            add_segment(problems, before, f"[{index}]")


def _dict_check(value_type: Compiled) -> Check:
    value_check = value_type.check
    assert value_check is not None
    converts = value_type.converts

    def check(value: Any, problems: list[Problem]) -> Any:
        if not isinstance(value, dict):
            problems.append(type_problem("object", value))
            return value
        out = {}
        for key, item in value.items():
            before = len(problems)
            if not isinstance(key, str):
                problems.append(Problem("type", "string", received_type_name(key), None, f".{key}"))
            out[key] = value_check(item, problems)
            if len(problems) != before:
                add_segment(problems, before, f".{key}")
        return out if converts else value

    return check


def _lookup_check(allowed: dict[tuple[type, Any], Any], expected: str, cls: type | None) -> Check:
    def check(value: Any, problems: list[Problem]) -> Any:
        if cls is not None and value.__class__ is cls:
            return value
        if value.__class__ in _SCALARS:
            found = allowed.get((value.__class__, value), MISSING)
            if found is not MISSING:
                return found
        problems.append(type_problem(expected, value))
        return value

    return check


def _optional_check(inner: Compiled) -> Check:
    inner_check = inner.check
    assert inner_check is not None

    def check(value: Any, problems: list[Problem]) -> Any:
        if value is None:
            return None
        start = len(problems)
        out = inner_check(value, problems)
        if len(problems) != start:
            for problem in problems[start:]:
                if not problem.segments and problem.kind == "type":
                    problem.expected += " or null"
        return out

    return check


def _union_check(branches: list[Compiled], nullable: bool, expected: str) -> Check:
    checks = [b.check for b in branches]

    def check(value: Any, problems: list[Problem]) -> Any:
        if value is None and nullable:
            return None
        for branch_check in checks:
            attempt: list[Problem] = []
            assert branch_check is not None
            out = branch_check(value, attempt)
            if not attempt:
                return out
        problems.append(type_problem(expected, value))
        return value

    return check


def _object_check(name: str, plan: list[tuple[str, Check, str, bool]], build: type | None) -> Check:
    names = frozenset(field_name for field_name, _, _, _ in plan)

    def check(value: Any, problems: list[Problem]) -> Any:
        if build is not None and value.__class__ is build:
            return value
        if not isinstance(value, dict):
            problems.append(type_problem("object", value))
            return value
        start = len(problems)
        out = {}
        for field_name, field_check, expected, required in plan:
            if field_name in value:
                before = len(problems)
                out[field_name] = field_check(value[field_name], problems)
                if len(problems) != before:
                    add_segment(problems, before, f".{field_name}")
            elif required:
                problems.append(Problem("missing", expected, "missing", None, f".{field_name}"))
        if len(out) != len(value):
            for key in value:
                if key not in names:
                    problems.append(
                        Problem(
                            "unknown", "nothing", received_type_name(value[key]), None, f".{key}"
                        )
                    )
        if build is None or len(problems) != start:
            return out
        try:
            return build(**out)
        except (TypeError, ValueError) as exc:  # __post_init__ refusing the values
            problems.append(Problem("invalid", name, "object", str(exc) or name))
            return value

    return check
