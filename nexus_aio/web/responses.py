"""JSON responses (orjson) and the one error renderer every error path uses."""

from __future__ import annotations

import dataclasses
import decimal
import enum
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from nexus_aio.envelope import error_envelope
from nexus_aio.errors import NexusError, WorkflowExecutionError

JSON_HEADERS = {"Content-Type": "application/json"}


def _default(value: Any) -> Any:
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


def dumps(data: Any) -> bytes:
    """orjson with a fallback for sets, Decimals, enums and objects with ``to_dict``."""
    try:
        return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise WorkflowExecutionError(
            f"Result is not JSON serializable: {exc}", details={"reason": "serialization"}
        ) from None


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    if headers:
        merged = {**JSON_HEADERS, **headers}
    else:
        merged = JSON_HEADERS
    return web.Response(body=dumps(data), status=status, headers=merged)


def error_response(error: NexusError, workflow_id: str | None = None) -> web.Response:
    return json_response(
        error_envelope(error, workflow_id), status=error.status, headers=error.headers
    )
