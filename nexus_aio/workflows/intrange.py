"""Integers a client sends must fit a signed 64-bit integer (what JSON parsers, databases and
every SDK agree on). orjson reads integers up to 2**64 - 1 exactly and bigger ones as floats, so
a JSON body is screened on its text: only a body with a run of 19 or more digits (found with one
``bytes.translate`` and a substring search) is parsed again, with the standard library's parser
(which keeps every integer exact), to find the offending value. Query and path text is checked
where it is coerced (``coerce_text``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from nexus_aio.errors import ValidationError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "RANGE_TEXT",
    "check_json_ints",
    "int_out_of_range",
    "range_error",
    "wide_int_path",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
RANGE_TEXT: Final = "integer in the signed 64-bit range"
# Every digit byte as "0", every other byte as " ": a run of 19 digits is then a plain substring
# search (C speed; a regular expression is ~100 times slower on this).
_DIGIT_MASK: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN: Final = b"0" * 19


def int_out_of_range(value: int) -> bool:
    return value < INT64_MIN or value > INT64_MAX


def wide_int_path(value: Any, path: str = "") -> str | None:
    """The path of the first integer in ``value`` outside the signed 64-bit range, else None
    (walked without recursion)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        cls = item.__class__
        if cls is int:
            if item < INT64_MIN or item > INT64_MAX:
                return where or "body"
        elif cls is dict:
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in item.items())
        elif cls is list:
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def range_error(field: str) -> ValidationError:
    return ValidationError(
        f"Invalid parameter: {field} (integer outside the signed 64-bit range)",
        details={
            "field": field,
            "expected": RANGE_TEXT,
            "received": "integer out of range",
            "errors": [
                {
                    "field": field,
                    "expected": RANGE_TEXT,
                    "received": "integer out of range",
                    "message": f"{field}: integer outside the signed 64-bit range",
                }
            ],
        },
    )


def check_json_ints(raw: bytes | str, field: str = "") -> None:
    """Raise ``ValidationError`` (400) when the JSON text ``raw`` holds an integer outside the
    signed 64-bit range; costs one regular-expression scan when it does not."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) < 19 or data.translate(_DIGIT_MASK).find(_LONG_RUN) < 0:
        return
    try:
        exact = json.loads(data)
    except (ValueError, RecursionError):  # orjson read it; too deep for json: others refuse it
        return
    where = wide_int_path(exact, field)
    if where is not None:
        raise range_error(where)
