"""Text coercion: a query or path parameter's text read as its annotated type."""

from __future__ import annotations

import json
import math
import re
import typing
from collections.abc import Callable
from types import NoneType
from typing import Any, Final, Literal, NoReturn

from nexus_aio.errors import ValidationError
from nexus_aio.workflows.checks import Compiler
from nexus_aio.workflows.hints import (
    enum_list_text,
    is_enum_type,
    is_union,
    literal_json_value,
    strip_annotation,
)
from nexus_aio.workflows.intrange import (
    INT64_MAX,
    INT64_MIN,
    RANGE_TEXT,
    range_error,
    wide_int_path,
)
from nexus_aio.workflows.jsontypes import MISSING
from nexus_aio.workflows.problems import Problem, add_segment, validation_error

__all__ = ["TextCoercer", "coerce_text"]


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
    problem = Problem("type", expected, "string", None, field)
    error = validation_error([problem])
    shown = text if len(text) <= 40 else text[:40] + "..."
    error.details["errors"][0]["message"] = f"{field}: expected {expected}, received {shown!r}"
    raise error


def _text_coercer(annotation: Any) -> TextCoercer:
    annotation, _ = strip_annotation(annotation)
    if annotation is Any or annotation is str:
        return _text_identity
    simple = {int: _text_int, float: _text_float, bool: _text_bool}.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    if is_union(origin):
        return _text_union(typing.get_args(annotation))
    if origin is Literal:
        return _text_choice(typing.get_args(annotation))
    if is_enum_type(annotation):
        return _text_choice(tuple(annotation))
    if annotation is None or annotation is NoneType:
        return _text_choice((None,))
    return _text_json(annotation)


def _text_identity(text: str, field: str) -> Any:
    return text


def _text_int(text: str, field: str) -> Any:
    if _INT_TEXT.fullmatch(text):
        try:
            value = int(text)
        except ValueError:  # more digits than int() accepts
            _text_problem(field, RANGE_TEXT, text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
        _text_problem(field, RANGE_TEXT, text)
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
    raw = literal_json_value(value)
    if raw is None or isinstance(raw, bool):
        return json.dumps(raw)
    return str(raw)


def _text_choice(values: tuple[Any, ...]) -> TextCoercer:
    by_text: dict[str, Any] = {}
    for value in values:
        by_text.setdefault(_choice_text(value), value)
    expected = enum_list_text(values)

    def coerce(text: str, field: str) -> Any:
        found = by_text.get(text, MISSING)
        if found is MISSING:
            _text_problem(field, expected, text)
        return found

    return coerce


def _text_union(args: tuple[Any, ...]) -> TextCoercer:
    branches = [_text_coercer(a) for a in args if a is not NoneType]
    if len(branches) == 1:
        return branches[0]
    expected = " or ".join(
        Compiler().compile(a, "parameter").expected for a in args if a is not NoneType
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
    compiled = Compiler().compile(annotation, "parameter")
    check = compiled.check
    assert check is not None

    def coerce(text: str, field: str) -> Any:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            _text_problem(field, compiled.expected, text)
        wide = wide_int_path(value, field)
        if wide is not None:
            raise range_error(wide)
        problems: list[Problem] = []
        out = check(value, problems)
        if problems:
            add_segment(problems, 0, field)
            raise validation_error(problems)
        return out

    return coerce
