"""JSON responses (orjson) and the one error renderer every error path uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from nexus_aio.envelope import error_envelope
from nexus_aio.errors import NexusError, WorkflowExecutionError
from nexus_aio.workflows.results import DUMPS_OPTIONS, json_default

JSON_HEADERS = {"Content-Type": "application/json"}


def dumps(data: Any) -> bytes:
    """orjson with a fallback for sets, Decimals, enums and objects with ``to_dict``."""
    try:
        return orjson.dumps(data, default=json_default, option=DUMPS_OPTIONS)
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
    headers = error.headers
    envelope = error_envelope(error, workflow_id)
    response = json_response(envelope, status=error.status, headers=headers)
    if headers and headers.get("Connection") == "close":
        response.force_close()  # the header alone does not make aiohttp close the connection
    return response
