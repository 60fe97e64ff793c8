"""A custom endpoint's bad parameters as one ``ValidationError`` listing every problem, with the
``details`` shape of workflow validation (``field``/``expected``/``received`` of the first one and
an ``errors`` list); marshmallow's nested messages flattened into the same shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nexus_aio.errors import ValidationError
from nexus_aio.workflows.jsontypes import received_type_name

__all__ = ["errors_of", "marshmallow_loader", "problem", "raise_problems"]

_MAX_FIELDS_IN_MESSAGE = 10
_MARSHMALLOW_TYPES = {
    "String": "string",
    "Str": "string",
    "Email": "string",
    "Url": "string",
    "URL": "string",
    "UUID": "string",
    "DateTime": "string",
    "Date": "string",
    "Integer": "integer",
    "Int": "integer",
    "Float": "number",
    "Number": "number",
    "Decimal": "number",
    "Boolean": "boolean",
    "Bool": "boolean",
    "List": "array",
    "Tuple": "array",
    "Dict": "object",
    "Mapping": "object",
    "Nested": "object",
}


def problem(field: str, expected: str, received: str, message: str) -> dict[str, str]:
    return {"field": field, "expected": expected, "received": received, "message": message}


def raise_problems(problems: list[dict[str, str]]) -> None:
    """One ``ValidationError`` with the workflow-validation ``details`` shape."""
    first = problems[0]
    fields = [p["field"] for p in problems]
    if len(problems) == 1:
        message = f"Invalid parameter: {fields[0]}"
    else:
        shown = ", ".join(fields[:_MAX_FIELDS_IN_MESSAGE])
        more = ", ..." if len(fields) > _MAX_FIELDS_IN_MESSAGE else ""
        message = f"{len(problems)} invalid parameters: {shown}{more}"
    raise ValidationError(
        message,
        details={
            "field": first["field"],
            "expected": first["expected"],
            "received": first["received"],
            "errors": problems,
        },
    )


def errors_of(exc: ValidationError) -> list[dict[str, str]]:
    details = exc.details if isinstance(exc.details, dict) else {}
    found = details.get("errors")
    if found:
        return list(found)
    field = str(details.get("field", "body"))
    return [
        problem(
            field,
            str(details.get("expected", "")),
            str(details.get("received", "")),
            exc.message,
        )
    ]


def marshmallow_loader(schema: Any) -> Callable[[Any], Any]:
    from marshmallow import ValidationError as MarshmallowError

    def load(value: Any) -> Any:
        try:
            return schema.load(value)
        except MarshmallowError as exc:
            problems = _marshmallow_problems(schema, exc.messages, value, "body")
            raise_problems(problems or [problem("body", "object", "invalid", str(exc))])
        return None  # pragma: no cover - raise_problems always raises

    return load


def _marshmallow_problems(
    schema: Any, messages: Any, value: Any, prefix: str
) -> list[dict[str, str]]:
    """marshmallow's nested ``{field: [messages]}`` as flat problems naming ``body.<field>``."""
    if isinstance(messages, list):
        text = "; ".join(str(m) for m in messages)
        return [problem(prefix, "object", received_type_name(value), f"{prefix}: {text}")]
    problems: list[dict[str, str]] = []
    fields = getattr(schema, "fields", {}) or {}
    for key, inner in messages.items():
        if key == "_schema":
            problems.extend(_marshmallow_problems(None, inner, value, prefix))
            continue
        field = f"{prefix}.{key}" if isinstance(key, str) else f"{prefix}[{key}]"
        present = isinstance(value, Mapping) and key in value
        sub = value.get(key) if isinstance(value, Mapping) else None
        declared = fields.get(key) if isinstance(key, str) else None
        if isinstance(inner, dict) and declared is not None:
            nested = getattr(declared, "schema", None)
            problems.extend(_marshmallow_problems(nested, inner, sub, field))
            continue
        text = "; ".join(str(m) for m in inner) if isinstance(inner, list) else str(inner)
        if declared is None:
            expected = "nothing"
        else:
            expected = _MARSHMALLOW_TYPES.get(type(declared).__name__, "valid value")
        received = received_type_name(sub) if present else "missing"
        problems.append(problem(field, expected, received, f"{field}: {text}"))
    return problems
