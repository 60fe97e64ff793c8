"""pydantic v2 models as workflow inputs and results (the optional ``nexus-aio[pydantic]`` extra).

Nothing here imports pydantic: a model can only reach an annotation once its author imported
pydantic, so every test looks pydantic up in ``sys.modules`` and is a no-op without it.

Everything is worked out at registration: an input annotated with a model compiles to a check that
runs the model's own validator (its config decides strict or lax), a return annotation naming a
model compiles to an output converter (``model_dump(mode="json")``, or a ``TypeAdapter`` for
``list[Model]`` and the like). Workflows without models get neither, so their path is unchanged.

Inputs arrive as JSON, so a model validates them in pydantic's JSON mode (a strict model takes an
ISO date string for a ``datetime`` field, as it would from ``model_validate_json``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import sys
import typing
from collections.abc import Callable
from typing import Any, Final

import orjson

from nexus_aio.workflows.defs import LOCAL_PREFIX, hoist_to_root
from nexus_aio.workflows.hints import (
    is_dataclass_type,
    is_typeddict,
    strip_annotation,
)
from nexus_aio.workflows.jsontypes import received_type_name
from nexus_aio.workflows.problems import Problem

__all__ = [
    "involves_models",
    "is_model_type",
    "iterated_type",
    "model_check",
    "model_json_schema",
    "output_converter",
    "output_json_schema",
]

_REF_TEMPLATE: Final = LOCAL_PREFIX + "{model}"

# pydantic error types that mean "wrong JSON type": reported like the core's own type problems.
_EXPECTED: Final = {
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "tuple_type": "array",
    "set_type": "array",
    "frozen_set_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "dataclass_type": "object",
    "none_required": "null",
}

_ITERATORS: Final = frozenset(
    {
        collections.abc.AsyncIterator,
        collections.abc.AsyncGenerator,
        collections.abc.AsyncIterable,
        collections.abc.Iterator,
        collections.abc.Generator,
        collections.abc.Iterable,
    }
)


def _pydantic() -> Any:
    return sys.modules.get("pydantic")


def is_model_type(annotation: Any) -> bool:
    """Whether ``annotation`` is a pydantic ``BaseModel`` subclass (without importing pydantic)."""
    pydantic = _pydantic()
    return (
        pydantic is not None
        and isinstance(annotation, type)
        and issubclass(annotation, pydantic.BaseModel)
    )


def involves_models(annotation: Any) -> bool:
    """Whether a model appears anywhere in ``annotation`` (containers, unions, dataclass and
    TypedDict fields)."""
    if _pydantic() is None:
        return False
    return _involves(annotation, set())


def _involves(annotation: Any, seen: set[int]) -> bool:
    annotation = strip_annotation(annotation)[0]
    if isinstance(annotation, str):
        return False
    if is_model_type(annotation):
        return True
    if id(annotation) in seen:
        return False
    seen.add(id(annotation))
    if any(_involves(arg, seen) for arg in typing.get_args(annotation)):
        return True
    if is_dataclass_type(annotation) or is_typeddict(annotation):
        try:
            hints = typing.get_type_hints(annotation, include_extras=True)
        except Exception:
            return False
        return any(_involves(hint, seen) for hint in hints.values())
    return False


def iterated_type(annotation: Any) -> Any:
    """The item type of ``AsyncIterator[T]`` and the like (a generator's chunks), else ``Any``."""
    annotation = strip_annotation(annotation)[0]
    if typing.get_origin(annotation) in _ITERATORS:
        args = typing.get_args(annotation)
        if args:
            return args[0]
    return Any


# -- inputs ----------------------------------------------------------------------------------------
def model_check(cls: type) -> Callable[[Any, list[Problem]], Any]:
    """A compiled check (see :mod:`nexus_aio.workflows.checks`) running ``cls``'s validator on a
    JSON value; each pydantic error becomes a :class:`Problem` with its path."""
    pydantic = _pydantic()
    error_class = pydantic.ValidationError
    validate_json = cls.model_validate_json  # type: ignore[attr-defined]
    validate_python = cls.model_validate  # type: ignore[attr-defined]
    try:  # to name the type a missing field expects
        schema: dict[str, Any] = model_json_schema(cls)
    except Exception:  # a field type without a JSON Schema (arbitrary_types_allowed)
        schema = {}

    def check(value: Any, problems: list[Problem]) -> Any:
        if isinstance(value, cls):
            return value
        try:
            raw = orjson.dumps(value)
        except TypeError:  # not plain JSON (an integer beyond 64 bits...): validate as is
            raw = None
        try:
            return validate_json(raw) if raw is not None else validate_python(value)
        except error_class as exc:
            problems.extend(_problem(error, schema) for error in exc.errors(include_url=False))
            return value

    return check


def _problem(error: Any, schema: dict[str, Any]) -> Problem:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        problem = Problem("missing", _expected_at(schema, error["loc"]), "missing")
    elif kind == "extra_forbidden":
        problem = Problem("unknown", "nothing", received_type_name(value))
    elif kind in _EXPECTED:
        problem = Problem("type", _EXPECTED[kind], received_type_name(value))
    else:
        problem = Problem("invalid", kind, received_type_name(value), error["msg"])
    problem.segments = [
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
    ]
    problem.segments.reverse()
    return problem


def _expected_at(schema: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """The JSON type the model's schema gives at ``loc`` ("string", "integer or null"...)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        for _ in range(len(defs) + 1):
            ref = node.get("$ref") if isinstance(node, dict) else None
            if not isinstance(ref, str) or not ref.startswith(LOCAL_PREFIX):
                break
            node = defs.get(ref[len(LOCAL_PREFIX) :], {})
        return node

    node: Any = schema
    for part in loc:
        node = resolve(node)
        if not isinstance(node, dict):
            return "value"
        if isinstance(part, int):
            node = node.get("items")
        else:
            node = node.get("properties", {}).get(part, node.get("additionalProperties"))
    node = resolve(node)
    if not isinstance(node, dict):
        return "value"
    branches = node.get("anyOf", [node])
    names = [resolve(b).get("type") for b in branches if isinstance(resolve(b), dict)]
    if not names or not all(isinstance(n, str) for n in names):
        return "value"
    return " or ".join(names)


# -- JSON Schema -----------------------------------------------------------------------------------
def model_json_schema(cls: type, mode: str = "validation") -> dict[str, Any]:
    """The model's JSON Schema, its nested models under ``$defs`` (``#/$defs/<Name>``)."""
    schema: dict[str, Any] = cls.model_json_schema(  # type: ignore[attr-defined]
        ref_template=_REF_TEMPLATE, mode=mode
    )
    return schema


def output_json_schema(annotation: Any) -> dict[str, Any] | None:
    """The JSON Schema of a result annotated ``annotation`` as pydantic serialises it, ``$defs``
    at its root; ``None`` when no model is involved or pydantic cannot describe it."""
    if not involves_models(annotation):
        return None
    item = iterated_type(annotation)
    if item is not Any:  # a generator: its result is the list of its chunks
        items = output_json_schema(item)
        return None if items is None else hoist_to_root({"type": "array", "items": items})
    pydantic = _pydantic()
    try:
        schema: dict[str, Any] = pydantic.TypeAdapter(annotation).json_schema(
            mode="serialization", ref_template=_REF_TEMPLATE
        )
    except Exception:  # PydanticSchemaGenerationError, PydanticInvalidForJsonSchema...
        return None
    return schema


# -- results ---------------------------------------------------------------------------------------
def output_converter(annotation: Any, takes_models: bool = False) -> Callable[[Any], Any] | None:
    """What turns a result annotated ``annotation`` into JSON values, or ``None`` (nothing to do).

    A model is dumped with ``model_dump(mode="json")``; ``list[Model]``, ``Optional[Model]``, a
    dataclass holding models... through a ``TypeAdapter`` built here. An unannotated (or ``Any``)
    result is dumped when it is a model only if the workflow takes models (``takes_models``), so
    that workflows without models keep their path unchanged.
    """
    pydantic = _pydantic()
    if pydantic is None:
        return None
    stripped = strip_annotation(annotation)[0]
    if is_model_type(stripped) or (takes_models and (stripped is Any or isinstance(stripped, str))):
        base = pydantic.BaseModel

        def dump(value: Any) -> Any:
            return value.model_dump(mode="json") if isinstance(value, base) else value

        return dump
    if not involves_models(stripped):
        return None
    try:
        adapter = pydantic.TypeAdapter(stripped)
    except Exception:
        return _walk

    def convert(value: Any) -> Any:
        try:
            return adapter.dump_python(value, mode="json", warnings=False)
        except Exception:  # PydanticSerializationError: a value pydantic cannot serialise
            return _walk(value)

    return convert


def _walk(value: Any) -> Any:
    """Models dumped wherever they sit in plain containers and dataclasses."""
    if is_model_type(value.__class__):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _walk(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
