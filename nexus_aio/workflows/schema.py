"""Workflow input schemas from type hints, compiled once at registration.

A workflow's inputs are its parameters: the type hint says what JSON is acceptable, the default
says whether the input is optional. Each annotation is compiled, when the workflow is registered,
into a small checking closure; a request then costs one closure call per input instead of a walk
over ``typing`` objects. Checking is strict about JSON types (``"3"``, ``1.5`` and ``true`` are not
integers) because silently coercing would hide client bugs.

Every problem in a request is reported at once, each with the path of the offending value
(``items[2]``, ``config.name``), so a client can fix its request in one round trip.

The same annotations also give the ``/schema`` description, a JSON Schema for OpenAPI, a
marshmallow schema for apispec, and text coercion for query and path parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, Union

from nexus_aio.errors import RegistrationError, ValidationError

__all__ = [
    "MISSING",
    "InputField",
    "InputSchema",
    "coerce_text",
    "json_type_name",
    "output_schema",
    "received_type_name",
    "type_json_schema",
]


class _Missing:
    """The type of ``MISSING``: a falsy-free, copy-safe singleton meaning "no default"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # copy/pickle give back the singleton


MISSING: Final[Any] = _Missing()

# At most this many problems are listed in ``details["errors"]``: a 100,000-item list of wrong
# values must not turn into a multi-megabyte error response. The message still gives the count.
MAX_REPORTED_ERRORS: Final = 100
_MAX_FIELDS_IN_MESSAGE: Final = 10

_NoneType = type(None)
_SCALARS: Final = frozenset({str, int, float, bool, _NoneType})
_JSON_TYPE_NAMES: Final[dict[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
    _NoneType: "null",
}
_IMMUTABLE_DEFAULTS: Final = (str, int, float, bool, bytes, _NoneType, enum.Enum, tuple, frozenset)


def json_type_name(value: Any) -> str:
    """The JSON type of ``value`` ("string", "integer", ...); the Python type name if not JSON."""
    name = _JSON_TYPE_NAMES.get(value.__class__)
    if name is not None:
        return name
    for cls, cls_name in _JSON_TYPE_NAMES.items():
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


# --------------------------------------------------------------------------- problems


class _Problem:
    """One thing wrong with the inputs. ``segments`` grows leaf-first as checks return upwards,
    so a path string is only built when there is something to report."""

    __slots__ = ("detail", "expected", "kind", "received", "segments")

    def __init__(
        self, kind: str, expected: str, received: str, detail: str | None = None, *segments: str
    ) -> None:
        self.kind = kind  # "type" | "missing" | "unknown" | "invalid"
        self.expected = expected
        self.received = received
        self.detail = detail
        self.segments = list(segments)

    @property
    def field(self) -> str:
        return "".join(reversed(self.segments))

    def message(self) -> str:
        field = self.field
        if self.kind == "missing":
            return f"Missing required input: {field}"
        if self.kind == "unknown":
            return f"Unknown input: {field}"
        if self.kind == "invalid":
            return f"{field}: {self.detail}"
        return f"{field}: expected {self.expected}, received {self.received}"

    def to_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "expected": self.expected,
            "received": self.received,
            "message": self.message(),
        }


def _type_problem(expected: str, value: Any) -> _Problem:
    return _Problem("type", expected, received_type_name(value))


def _add_segment(problems: list[_Problem], start: int, segment: str) -> None:
    for problem in problems[start:]:
        problem.segments.append(segment)


def _validation_error(problems: list[_Problem]) -> ValidationError:
    """The documented error: the first problem at the top of ``details``, all in ``errors``."""
    first = problems[0]
    fields = [p.field for p in problems]
    if len(problems) == 1:
        message = f"Invalid parameter: {fields[0]}"
    else:
        shown = ", ".join(fields[:_MAX_FIELDS_IN_MESSAGE])
        more = ", ..." if len(fields) > _MAX_FIELDS_IN_MESSAGE else ""
        message = f"{len(problems)} invalid inputs: {shown}{more}"
    details: dict[str, Any] = {
        "field": first.field,
        "expected": first.expected,
        "received": first.received,
        "errors": [p.to_dict() for p in problems[:MAX_REPORTED_ERRORS]],
    }
    if len(problems) > MAX_REPORTED_ERRORS:
        details["error_count"] = len(problems)
    return ValidationError(message, details=details)


# --------------------------------------------------------------------------- annotations


def _strip(annotation: Any) -> tuple[Any, str | None]:
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


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def _is_typeddict(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing.is_typeddict(annotation)


def _is_dataclass_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _is_enum_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _literal_json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _value_key(value: Any) -> tuple[type, Any]:
    """A lookup key that keeps ``1``, ``1.0`` and ``True`` apart (they are equal in Python)."""
    return (value.__class__, value)


def _enum_list_text(values: Iterable[Any]) -> str:
    return "one of " + json.dumps([_literal_json_value(v) for v in values], default=str)


def _object_hints(cls: type, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError, TypeError from unresolvable forward references
        raise RegistrationError(
            f"{where}: cannot resolve the type hints of {cls.__name__}: {exc}"
        ) from None


# --------------------------------------------------------------------------- compiling checks

Check = Callable[[Any, list[_Problem]], Any]
"""A compiled check: returns the (possibly converted) value, appends problems to the list."""


class _Compiled:
    """A compiled annotation. ``converts`` says whether ``check`` may return a different object
    (a dataclass built, an enum member looked up); containers of non-converting types skip
    building a copy."""

    __slots__ = ("check", "converts", "expected")

    def __init__(self, check: Check | None, expected: str, converts: bool) -> None:
        self.check = check  # None only while a recursive dataclass/TypedDict is being compiled
        self.expected = expected
        self.converts = converts


def _accept_any(value: Any, problems: list[_Problem]) -> Any:
    return value


def _check_str(value: Any, problems: list[_Problem]) -> Any:
    if not isinstance(value, str):
        problems.append(_type_problem("string", value))
    return value


def _check_int(value: Any, problems: list[_Problem]) -> Any:
    if not isinstance(value, int) or value.__class__ is bool:
        problems.append(_type_problem("integer", value))
    return value


def _check_float(value: Any, problems: list[_Problem]) -> Any:
    if value.__class__ is float:
        return value
    if isinstance(value, int | float) and value.__class__ is not bool:
        try:
            return float(value)
        except OverflowError:
            problems.append(_Problem("invalid", "number", "number", "too large for a number"))
            return value
    problems.append(_type_problem("number", value))
    return value


def _check_bool(value: Any, problems: list[_Problem]) -> Any:
    if value is not True and value is not False:
        problems.append(_type_problem("boolean", value))
    return value


def _check_null(value: Any, problems: list[_Problem]) -> Any:
    if value is not None:
        problems.append(_type_problem("null", value))
    return value


def _check_list(value: Any, problems: list[_Problem]) -> Any:
    if not isinstance(value, list):
        problems.append(_type_problem("array", value))
    return value


def _check_dict(value: Any, problems: list[_Problem]) -> Any:
    if not isinstance(value, dict):
        problems.append(_type_problem("object", value))
    return value


_SIMPLE: Final[dict[Any, _Compiled]] = {
    Any: _Compiled(_accept_any, "any", False),
    str: _Compiled(_check_str, "string", False),
    int: _Compiled(_check_int, "integer", False),
    float: _Compiled(_check_float, "number", True),
    bool: _Compiled(_check_bool, "boolean", False),
    None: _Compiled(_check_null, "null", False),
    _NoneType: _Compiled(_check_null, "null", False),
    list: _Compiled(_check_list, "array", False),
    dict: _Compiled(_check_dict, "object", False),
}


def _late_bound(node: _Compiled) -> Check:
    """A check for a type still being compiled (a recursive dataclass refers to itself)."""

    def check(value: Any, problems: list[_Problem]) -> Any:
        assert node.check is not None
        return node.check(value, problems)

    return check


class _Compiler:
    """Compiles annotations to checks. One per schema; remembers objects being compiled so
    recursive dataclasses and TypedDicts terminate."""

    def __init__(self) -> None:
        self._objects: dict[type, _Compiled] = {}

    def compile(self, annotation: Any, where: str) -> _Compiled:
        annotation, _ = _strip(annotation)
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
        if _is_union(origin):
            return self._union(args, where)
        if origin is None:
            if _is_enum_type(annotation):
                return self._enum(annotation, where)
            if _is_dataclass_type(annotation) or _is_typeddict(annotation):
                return self._object(annotation, where)
        raise RegistrationError(
            f"{where}: unsupported type annotation {_type_repr(annotation)}; use str, int, float, "
            "bool, list, list[T], dict, dict[str, T], Optional[T], Literal[...], Any, "
            "a dataclass, a TypedDict or a str/int Enum"
        )

    def _list(self, args: tuple[Any, ...], where: str) -> _Compiled:
        item = self.compile(args[0], where) if args else _SIMPLE[Any]
        if item.check is _accept_any:
            return _SIMPLE[list]
        return _Compiled(_list_check(item), "array", item.converts)

    def _dict(self, args: tuple[Any, ...], where: str) -> _Compiled:
        if args:
            key = _strip(args[0])[0]
            if key is not str and key is not Any:
                raise RegistrationError(
                    f"{where}: dict keys must be str (JSON object keys are strings), "
                    f"got {_type_repr(key)}"
                )
        value = self.compile(args[1], where) if len(args) == 2 else _SIMPLE[Any]
        if value.check is _accept_any:
            return _SIMPLE[dict]
        return _Compiled(_dict_check(value), "object", value.converts)

    def _literal(self, values: tuple[Any, ...]) -> _Compiled:
        allowed: dict[tuple[type, Any], Any] = {}
        for value in values:
            allowed[_value_key(_literal_json_value(value))] = value
            allowed[_value_key(value)] = value
        expected = _enum_list_text(values)
        converts = any(isinstance(v, enum.Enum) for v in values)
        return _Compiled(_lookup_check(allowed, expected, None), expected, converts)

    def _enum(self, cls: type[enum.Enum], where: str) -> _Compiled:
        members = list(cls)
        for member in members:
            if member.value.__class__ not in (str, int):
                raise RegistrationError(
                    f"{where}: enum {cls.__name__} must have str or int values "
                    f"({member.name} = {member.value!r})"
                )
        allowed = {_value_key(m.value): m for m in members}
        expected = _enum_list_text(members)
        return _Compiled(_lookup_check(allowed, expected, cls), expected, True)

    def _union(self, args: tuple[Any, ...], where: str) -> _Compiled:
        nullable = _NoneType in args
        branches = [self.compile(a, where) for a in args if a is not _NoneType]
        if any(b.check is _accept_any for b in branches):
            return _SIMPLE[Any]
        converts = any(b.converts for b in branches)
        if len(branches) == 1:
            inner = branches[0]
            return _Compiled(_optional_check(inner), f"{inner.expected} or null", inner.converts)
        expected = " or ".join([b.expected for b in branches] + (["null"] if nullable else []))
        return _Compiled(_union_check(branches, nullable, expected), expected, converts)

    def _object(self, cls: type, where: str) -> _Compiled:
        known = self._objects.get(cls)
        if known is not None:
            if known.check is None:
                return _Compiled(_late_bound(known), "object", True)
            return known
        node = _Compiled(None, "object", True)
        self._objects[cls] = node
        plan = []
        for name, annotation, required in _object_fields(cls, where):
            compiled = self.compile(annotation, f"{where}, field {cls.__name__}.{name}")
            assert compiled.check is not None  # a recursive reference is late-bound
            plan.append((name, compiled.check, compiled.expected, required))
        build = cls if _is_dataclass_type(cls) else None
        node.check = _object_check(cls.__name__, plan, build)
        return node


def _type_repr(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation)


def _object_fields(cls: type, where: str) -> list[tuple[str, Any, bool]]:
    """(name, annotation, required) of a dataclass's init fields or a TypedDict's keys."""
    hints = _object_hints(cls, where)
    if _is_dataclass_type(cls):
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


def _list_check(item: _Compiled) -> Check:
    item_check = item.check
    assert item_check is not None
    converts = item.converts

    def check(value: Any, problems: list[_Problem]) -> Any:
        if not isinstance(value, list):
            problems.append(_type_problem("array", value))
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


def _locate_items(
    item_check: Check, items: list[Any], problems: list[_Problem], start: int
) -> None:
    """Re-run a failed list's items one by one to give each problem its index. Only on the error
    path, so the success path needs no per-item bookkeeping."""
    del problems[start:]
    for index, item in enumerate(items):
        before = len(problems)
        item_check(item, problems)
        if len(problems) != before:
            _add_segment(problems, before, f"[{index}]")


def _dict_check(value_type: _Compiled) -> Check:
    value_check = value_type.check
    assert value_check is not None
    converts = value_type.converts

    def check(value: Any, problems: list[_Problem]) -> Any:
        if not isinstance(value, dict):
            problems.append(_type_problem("object", value))
            return value
        out = {}
        for key, item in value.items():
            before = len(problems)
            if not isinstance(key, str):
                problems.append(
                    _Problem("type", "string", received_type_name(key), None, f".{key}")
                )
            out[key] = value_check(item, problems)
            if len(problems) != before:
                _add_segment(problems, before, f".{key}")
        return out if converts else value

    return check


def _lookup_check(allowed: dict[tuple[type, Any], Any], expected: str, cls: type | None) -> Check:
    def check(value: Any, problems: list[_Problem]) -> Any:
        if cls is not None and value.__class__ is cls:
            return value
        if value.__class__ in _SCALARS:
            found = allowed.get((value.__class__, value), MISSING)
            if found is not MISSING:
                return found
        problems.append(_type_problem(expected, value))
        return value

    return check


def _optional_check(inner: _Compiled) -> Check:
    inner_check = inner.check
    assert inner_check is not None

    def check(value: Any, problems: list[_Problem]) -> Any:
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


def _union_check(branches: list[_Compiled], nullable: bool, expected: str) -> Check:
    checks = [b.check for b in branches]

    def check(value: Any, problems: list[_Problem]) -> Any:
        if value is None and nullable:
            return None
        for branch_check in checks:
            attempt: list[_Problem] = []
            assert branch_check is not None
            out = branch_check(value, attempt)
            if not attempt:
                return out
        problems.append(_type_problem(expected, value))
        return value

    return check


def _object_check(name: str, plan: list[tuple[str, Check, str, bool]], build: type | None) -> Check:
    names = frozenset(field_name for field_name, _, _, _ in plan)

    def check(value: Any, problems: list[_Problem]) -> Any:
        if build is not None and value.__class__ is build:
            return value
        if not isinstance(value, dict):
            problems.append(_type_problem("object", value))
            return value
        start = len(problems)
        out = {}
        for field_name, field_check, expected, required in plan:
            if field_name in value:
                before = len(problems)
                out[field_name] = field_check(value[field_name], problems)
                if len(problems) != before:
                    _add_segment(problems, before, f".{field_name}")
            elif required:
                problems.append(_Problem("missing", expected, "missing", None, f".{field_name}"))
        if len(out) != len(value):
            for key in value:
                if key not in names:
                    problems.append(
                        _Problem(
                            "unknown", "nothing", received_type_name(value[key]), None, f".{key}"
                        )
                    )
        if build is None or len(problems) != start:
            return out
        try:
            return build(**out)
        except (TypeError, ValueError) as exc:  # __post_init__ refusing the values
            problems.append(_Problem("invalid", name, "object", str(exc) or name))
            return value

    return check


# --------------------------------------------------------------------------- the schema


@dataclass(frozen=True, slots=True)
class InputField:
    """One workflow input: its name, annotation, and default (``MISSING`` when required)."""

    name: str
    annotation: Any
    required: bool
    default: Any
    description: str | None = None


class InputSchema:
    """The inputs of one workflow, compiled to checks once so ``validate`` is cheap per request."""

    fields: dict[str, InputField]

    def __init__(self, fields: Iterable[InputField]) -> None:
        self.fields = {}
        compiler = _Compiler()
        plan = []
        for fld in fields:
            if fld.name in self.fields:
                raise RegistrationError(f"parameter {fld.name!r} is declared twice")
            self.fields[fld.name] = fld
            compiled = compiler.compile(fld.annotation, f"parameter {fld.name!r}")
            check = None if compiled.check is _accept_any else compiled.check
            # An optional field without a default is left out, so the callee's own default applies.
            default = MISSING if fld.required else fld.default
            copy_default = default is not MISSING and not isinstance(default, _IMMUTABLE_DEFAULTS)
            plan.append((fld.name, check, fld.required, default, copy_default, compiled.expected))
        self._plan = tuple(plan)
        self._describe: dict[str, dict[str, Any]] | None = None
        self._marshmallow: dict[str, type] = {}

    def __repr__(self) -> str:
        return f"InputSchema({list(self.fields)})"

    @classmethod
    def from_callable(
        cls,
        fn: Callable[..., Any],
        *,
        skip: Callable[[inspect.Parameter, Any], bool] | None = None,
    ) -> InputSchema:
        """The inputs of ``fn``; ``skip(param, annotation)`` marks injected (non-input) params.

        Hints are resolved with ``typing.get_type_hints`` so ``from __future__ import annotations``
        works; an annotation that cannot be resolved is passed to ``skip`` as its string and is
        an error only if the parameter is an input.
        """
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise RegistrationError(f"cannot read the signature of {fn!r}: {exc}") from None
        hints = _callable_hints(fn)
        fields = []
        for name, param in signature.parameters.items():
            annotation = hints.get(name, param.annotation)
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise RegistrationError(
                    f"parameter {name!r}: *args/**kwargs cannot be inputs; "
                    "declare each input as a named parameter"
                )
            if skip is not None and skip(param, annotation):
                continue
            if param.kind is param.POSITIONAL_ONLY:
                raise RegistrationError(
                    f"parameter {name!r}: positional-only parameters cannot be inputs "
                    "(inputs are passed by name)"
                )
            if isinstance(annotation, str):
                raise RegistrationError(
                    f"parameter {name!r}: cannot resolve the annotation {annotation!r} "
                    "(is it importable from the function's module?)"
                )
            required = param.default is inspect.Parameter.empty
            stripped_description = _strip(annotation)[1]
            if annotation is inspect.Parameter.empty:
                annotation = Any
            default = MISSING if required else param.default
            fields.append(InputField(name, annotation, required, default, stripped_description))
        return cls(fields)

    @classmethod
    def from_fields(cls, fields: Iterable[InputField]) -> InputSchema:
        """A schema from ready fields (a DAG's inputs merged from its nodes)."""
        return cls(fields)

    def validate(self, inputs: Any) -> dict[str, Any]:
        """The keyword arguments for the workflow: checked, defaults filled in, dataclasses built.

        Raises ``ValidationError`` listing every problem (missing, unknown, wrong type).
        """
        if not isinstance(inputs, dict):
            raise _validation_error(
                [_Problem("type", "object", received_type_name(inputs), None, "inputs")]
            )
        problems: list[_Problem] = []
        out: dict[str, Any] = {}
        found = 0
        for name, check, required, default, copy_default, expected in self._plan:
            if name in inputs:
                found += 1
                if check is None:
                    out[name] = inputs[name]
                    continue
                before = len(problems)
                try:
                    out[name] = check(inputs[name], problems)
                except RecursionError:  # a recursive dataclass fed a very deep document
                    del problems[before:]
                    problems.append(_Problem("invalid", expected, "object", "nested too deeply"))
                if len(problems) != before:
                    _add_segment(problems, before, name)
            elif required:
                problems.append(_Problem("missing", expected, "missing", None, name))
            elif copy_default:
                out[name] = copy.deepcopy(default)
            elif default is not MISSING:
                out[name] = default
        if found != len(inputs):
            self._report_unknown(inputs, problems)
        if problems:
            raise _validation_error(problems)
        return out

    def _report_unknown(self, inputs: dict[str, Any], problems: list[_Problem]) -> None:
        for key, value in inputs.items():
            if key not in self.fields:
                problems.append(
                    _Problem("unknown", "nothing", received_type_name(value), None, str(key))
                )

    def describe(self) -> dict[str, dict[str, Any]]:
        """The ``/schema`` "inputs" mapping: per input its type, ``required`` and ``default``."""
        if self._describe is None:
            self._describe = {
                name: _describe_field(
                    type_json_schema(f.annotation), f.required, f.default, f.description
                )
                for name, f in self.fields.items()
            }
        return copy.deepcopy(self._describe)

    def json_schema(self) -> dict[str, Any]:
        """A JSON Schema (OpenAPI 3.1) for the inputs object: unknown inputs are not allowed."""
        properties = {}
        for name, fld in self.fields.items():
            prop = type_json_schema(fld.annotation)
            _add_annotations(prop, fld.required, fld.default, fld.description)
            properties[name] = prop
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        required = [name for name, fld in self.fields.items() if fld.required]
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        return schema

    def marshmallow_schema(self, name: str = "Inputs") -> type:
        """A marshmallow ``Schema`` class mirroring the inputs, for apispec's MarshmallowPlugin.

        Documentation only: requests are checked by ``validate``, which is strict and faster.
        Built on first use and cached per ``name`` (apispec wants distinct component names).
        """
        cached = self._marshmallow.get(name)
        if cached is None:
            from marshmallow import Schema

            declared = {
                n: _marshmallow_field(f.annotation, f.required, f.default, f.description)
                for n, f in self.fields.items()
            }
            cached = self._marshmallow[name] = Schema.from_dict(declared, name=name)
        return cached


def _callable_hints(fn: Callable[..., Any]) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- JSON Schema


def type_json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation; ``{}`` (anything) for what it cannot describe."""
    return _json_schema(annotation, frozenset())


def _json_schema(annotation: Any, seen: frozenset[type]) -> dict[str, Any]:
    annotation, _ = _strip(annotation)
    if annotation is Any:
        return {}
    if annotation is None or annotation is _NoneType:
        return {"type": "null"}
    simple = _JSON_TYPE_NAMES.get(annotation) if isinstance(annotation, type) else None
    if simple is not None:
        return {"type": simple}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is not None:
        return _generic_json_schema(origin, args, seen)
    if _is_enum_type(annotation):
        values = [m.value for m in annotation]
        return {**_common_type(values), "enum": values, "title": annotation.__name__}
    if _is_dataclass_type(annotation) or _is_typeddict(annotation):
        return _object_json_schema(annotation, seen)
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
        values = [_literal_json_value(v) for v in args]
        return {**_common_type(values), "enum": values}
    if _is_union(origin):
        branches = [_json_schema(a, seen) for a in args if a is not _NoneType]
        if any(not b for b in branches):
            return {}
        if _NoneType in args:
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
        fields = _object_fields(cls, cls.__name__)
    except RegistrationError:
        return {"type": "object", "title": cls.__name__}
    defaults = _dataclass_defaults(cls)
    properties = {}
    for name, annotation, required in fields:
        prop = _json_schema(annotation, seen)
        default = defaults.get(name, MISSING)
        _add_annotations(prop, required, default, _strip(annotation)[1])
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": properties}
    required_names = [name for name, _, required in fields if required]
    if required_names:
        schema["required"] = required_names
    schema["additionalProperties"] = False
    return schema


def _dataclass_defaults(cls: type) -> dict[str, Any]:
    if not _is_dataclass_type(cls):
        return {}
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON (enums by value, dataclasses as objects), or ``MISSING``."""

    def convert(obj: Any) -> Any:
        if isinstance(obj, enum.Enum):
            return obj.value
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        raise TypeError

    try:
        return json.loads(json.dumps(value, default=convert, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return MISSING


def _add_annotations(
    schema: dict[str, Any], required: bool, default: Any, description: str | None
) -> None:
    if description:
        schema["description"] = description
    if not required and default is not MISSING:
        value = _jsonable(default)
        if value is not MISSING:
            schema["default"] = value


# --------------------------------------------------------------------------- /schema format


def _describe_field(
    schema: dict[str, Any], required: bool, default: Any, description: str | None
) -> dict[str, Any]:
    out = _describe_type(schema)
    out["required"] = required
    if not required:
        value = _jsonable(default)
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


# --------------------------------------------------------------------------- outputs


def output_schema(fn: Any) -> dict[str, Any]:
    """The ``/schema`` "outputs": ``{"result": <JSON Schema of the return annotation>}``.

    No annotation gives ``{"result": {}}`` (anything). A generator's result is its chunks, so
    ``AsyncIterator[str]`` describes an array of strings.
    """
    hints = _callable_hints(fn) if callable(fn) else {}
    returned = hints.get("return", inspect.Parameter.empty)
    if isinstance(returned, str):
        return {"result": {}}
    return {"result": type_json_schema(returned)}


# --------------------------------------------------------------------------- text coercion

_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_TEXT: Final = {
    "true": True, "1": True, "yes": True, "on": True,
    "false": False, "0": False, "no": False, "off": False,
}  # fmt: skip
_MAX_TEXT_CACHE: Final = 1024

TextCoercer = Callable[[str, str], Any]
_text_coercers: dict[Any, TextCoercer] = {}


def coerce_text(annotation: Any, text: str, field: str) -> Any:
    """A query or path parameter's text as the annotated type ("10" -> 10 for ``int``).

    Raises ``ValidationError`` naming ``field``. Containers (list, dict, dataclass) are read as
    JSON text and then checked like a JSON input.
    """
    try:
        coercer = _text_coercers.get(annotation)
    except TypeError:  # unhashable annotation object: compile without caching
        return _text_coercer(annotation)(text, field)
    if coercer is None:
        coercer = _text_coercer(annotation)
        if len(_text_coercers) < _MAX_TEXT_CACHE:
            _text_coercers[annotation] = coercer
    return coercer(text, field)


def _text_problem(field: str, expected: str, text: str) -> NoReturn:
    problem = _Problem("type", expected, "string", None, field)
    error = _validation_error([problem])
    shown = text if len(text) <= 40 else text[:40] + "..."
    error.details["errors"][0]["message"] = f"{field}: expected {expected}, received {shown!r}"
    raise error


def _text_coercer(annotation: Any) -> TextCoercer:
    annotation, _ = _strip(annotation)
    if annotation is Any or annotation is str:
        return _text_identity
    simple = {int: _text_int, float: _text_float, bool: _text_bool}.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    if _is_union(origin):
        return _text_union(typing.get_args(annotation))
    if origin is Literal:
        return _text_choice(typing.get_args(annotation))
    if _is_enum_type(annotation):
        return _text_choice(tuple(annotation))
    if annotation is None or annotation is _NoneType:
        return _text_choice((None,))
    return _text_json(annotation)


def _text_identity(text: str, field: str) -> Any:
    return text


def _text_int(text: str, field: str) -> Any:
    if _INT_TEXT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts
            pass
    _text_problem(field, "integer", text)


def _text_float(text: str, field: str) -> Any:
    if _FLOAT_TEXT.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    _text_problem(field, "number", text)


def _text_bool(text: str, field: str) -> Any:
    value = _BOOL_TEXT.get(text.lower())
    if value is None:
        _text_problem(field, "boolean", text)
    return value


def _choice_text(value: Any) -> str:
    raw = _literal_json_value(value)
    if raw is None or isinstance(raw, bool):
        return json.dumps(raw)
    return str(raw)


def _text_choice(values: tuple[Any, ...]) -> TextCoercer:
    by_text: dict[str, Any] = {}
    for value in values:
        by_text.setdefault(_choice_text(value), value)
    expected = _enum_list_text(values)

    def coerce(text: str, field: str) -> Any:
        found = by_text.get(text, MISSING)
        if found is MISSING:
            _text_problem(field, expected, text)
        return found

    return coerce


def _text_union(args: tuple[Any, ...]) -> TextCoercer:
    branches = [_text_coercer(a) for a in args if a is not _NoneType]
    if len(branches) == 1:
        return branches[0]
    expected = " or ".join(
        _Compiler().compile(a, "parameter").expected for a in args if a is not _NoneType
    )

    def coerce(text: str, field: str) -> Any:
        for branch in branches:
            try:
                return branch(text, field)
            except ValidationError:
                continue
        _text_problem(field, expected, text)

    return coerce


def _text_json(annotation: Any) -> TextCoercer:
    compiled = _Compiler().compile(annotation, "parameter")
    check = compiled.check
    assert check is not None

    def coerce(text: str, field: str) -> Any:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            _text_problem(field, compiled.expected, text)
        problems: list[_Problem] = []
        out = check(value, problems)
        if problems:
            _add_segment(problems, 0, field)
            raise _validation_error(problems)
        return out

    return coerce


# --------------------------------------------------------------------------- marshmallow

_marshmallow_objects: dict[type, type | None] = {}


def _marshmallow_field(
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
        value = _jsonable(default)
        if value is not MISSING:
            metadata["default"] = value
    if metadata:
        kwargs["metadata"] = metadata
    return field_type(**kwargs) if field_type is not None else fields.Raw(**kwargs)


def _marshmallow_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """(field class or a ready-made factory, kwargs) for one annotation."""
    from marshmallow import fields, validate

    annotation, _ = _strip(annotation)
    simple = {str: fields.String, float: fields.Float, bool: fields.Boolean}.get(annotation)
    if simple is not None:
        return simple, {}
    if annotation is int:
        return fields.Integer, {"strict": True}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is list or origin is list:
        inner = _marshmallow_field(args[0], False, MISSING, None) if args else fields.Raw()
        return fields.List, {"cls_or_instance": inner}
    if annotation is dict or origin is dict:
        values = _marshmallow_field(args[1], False, MISSING, None) if args else fields.Raw()
        return fields.Dict, {"keys": fields.String(), "values": values}
    if origin is Literal:
        values = [_literal_json_value(v) for v in args]
        kind = fields.String if all(isinstance(v, str) for v in values) else fields.Raw
        return kind, {"validate": validate.OneOf(values)}
    if _is_union(origin):
        rest = [a for a in args if a is not _NoneType]
        if len(rest) == 1:
            field_type, kwargs = _marshmallow_type(rest[0])
            return field_type, {**kwargs, "allow_none": True}
        return fields.Raw, {"allow_none": _NoneType in args}
    if _is_enum_type(annotation):
        return fields.Enum, {"enum": annotation, "by_value": True}
    if _is_dataclass_type(annotation) or _is_typeddict(annotation):
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
        defaults = _dataclass_defaults(cls)
        declared = {
            name: _marshmallow_field(ann, required, defaults.get(name, MISSING), None)
            for name, ann, required in _object_fields(cls, cls.__name__)
        }
        schema = Schema.from_dict(declared, name=f"{cls.__name__}Schema")
    except BaseException:
        del _marshmallow_objects[cls]
        raise
    _marshmallow_objects[cls] = schema
    return schema
