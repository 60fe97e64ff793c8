"""What a workflow's result must be: encodable as JSON, with the same rules the responses use
(orjson, plus sets and tuples as arrays, ``Decimal`` as a number, enums by value, objects with
``to_dict``/``model_dump``/``dict`` and dataclasses as objects).

The runtime checks a result with :func:`check_result` before the record says ``succeeded``: a
result no response could carry (an integer beyond 64 bits, an arbitrary object, a cycle) fails
the execution with ``WorkflowExecutionError`` instead of a succeeded record and a broken answer.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
from types import NoneType
from typing import Any, Final

import orjson

from nexus_aio.errors import WorkflowExecutionError

__all__ = ["DUMPS_OPTIONS", "check_result", "json_default"]

DUMPS_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_PLAIN: Final = frozenset({str, float, bool, NoneType})
_U64_MAX: Final = 2**64 - 1  # orjson writes integers from -2**63 up to this
_I64_MIN: Final = -(2**63)


def json_default(value: Any) -> Any:
    """orjson's ``default``: the types the API encodes beyond plain JSON."""
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    for attr in ("to_dict", "model_dump", "dict"):
        method = getattr(value, attr, None)
        if callable(method):
            return method()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def check_result(result: Any) -> None:
    """Raise ``WorkflowExecutionError`` when ``result`` cannot be encoded as JSON."""
    cls = result.__class__
    if cls in _PLAIN or (cls is int and _I64_MIN <= result <= _U64_MAX):
        return
    try:
        orjson.dumps(result, default=json_default, option=DUMPS_OPTIONS)
    except Exception as exc:  # TypeError from orjson, or whatever a to_dict() raised
        raise WorkflowExecutionError(
            f"Result is not JSON serializable: {exc}",
            details={"reason": "serialization", "exception": type(exc).__name__},
        ) from None
