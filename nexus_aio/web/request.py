"""Reading requests: the JSON body within the size limit, the execute request's fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from nexus_aio.errors import BadRequest, PayloadTooLarge, ValidationError
from nexus_aio.web.keys import nexus_of
from nexus_aio.workflows.coerce import coerce_text

if TYPE_CHECKING:
    from nexus_aio.workflows.workflow import CompiledWorkflow

EXECUTE_FIELDS = frozenset({"inputs", "session_id", "context", "mode"})


async def read_body(request: web.Request) -> bytes:
    """The raw body within ``max_request_size``: a declared ``Content-Length`` over the limit is
    refused before reading anything; a chunked body as soon as it crosses it (aiohttp's
    ``client_max_size``)."""
    limit = nexus_of(request).settings.max_request_size
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"Request body exceeds the limit of {limit} bytes",
            details={"max_request_size": limit, "content_length": length},
            headers={"Connection": "close"},
        )
    return await request.read() if request.body_exists else b""


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The body parsed as JSON (any content type); ``empty`` when there is no body."""
    raw = await read_body(request)
    if not raw or raw.isspace():
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(
            f"Malformed JSON body: {exc}",
            details={"field": "body", "expected": "JSON", "received": "malformed JSON"},
        ) from None


@dataclass(slots=True)
class ExecuteRequest:
    inputs: Any
    mode: str
    session_id: str | None
    context: dict[str, Any] | None


def _field_error(field: str, expected: str, value: Any) -> ValidationError:
    from nexus_aio.workflows.jsontypes import json_type_name

    received = json_type_name(value)
    return ValidationError(
        f"Invalid parameter: {field}",
        details={
            "field": field,
            "expected": expected,
            "received": received,
            "errors": [
                {
                    "field": field,
                    "expected": expected,
                    "received": received,
                    "message": f"{field} must be {expected}",
                }
            ],
        },
    )


def _query_body(request: web.Request, workflow: CompiledWorkflow) -> dict[str, Any]:
    """GET execute (browser ``EventSource``): inputs as ``inputs=<JSON>`` or one parameter each."""
    query = request.query
    body: dict[str, Any] = {}
    if "session_id" in query:
        body["session_id"] = query["session_id"]
    if "inputs" in query:
        try:
            body["inputs"] = orjson.loads(query["inputs"])
        except orjson.JSONDecodeError as exc:
            raise ValidationError(
                f"Malformed JSON in the inputs query parameter: {exc}",
                details={"field": "inputs", "expected": "JSON", "received": "malformed JSON"},
            ) from None
        return body
    fields = workflow.schema.fields
    inputs: dict[str, Any] = {}
    for key, text in query.items():
        if key in ("mode", "session_id"):
            continue
        field = fields.get(key)
        inputs[key] = coerce_text(field.annotation, text, key) if field is not None else text
    body["inputs"] = inputs
    return body


async def read_execute_request(request: web.Request, workflow: CompiledWorkflow) -> ExecuteRequest:
    """Read ``{"inputs", "session_id", "context", "mode"}`` from the body (or, for GET, the
    query) with the shape checks of the wire format; the execution service checks the rest."""
    if request.method == "GET":
        body: Any = _query_body(request, workflow)
    else:
        body = await read_json(request, empty={})
    if not isinstance(body, dict):
        raise _field_error("body", "object", body)
    unknown = body.keys() - EXECUTE_FIELDS
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationError(
            f"Unknown request field: {field} (allowed: inputs, session_id, context, mode)",
            details={
                "field": field,
                "expected": "nothing",
                "received": "unknown field",
                "errors": [
                    {
                        "field": f,
                        "expected": "nothing",
                        "received": "unknown field",
                        "message": f"Unknown request field: {f}",
                    }
                    for f in sorted(unknown)
                ],
            },
        )
    inputs = body.get("inputs", {})
    mode = (request.query_string and request.query.get("mode")) or body.get("mode") or "sync"
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise _field_error("context", "object", context)
    session_id = body.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise _field_error("session_id", "string", session_id)
    header_sid = request.headers.get("X-Session-ID")
    if header_sid is not None:
        if session_id is not None and session_id != header_sid:
            raise BadRequest(
                "X-Session-ID header and body session_id differ",
                details={"field": "session_id", "header": header_sid, "body": session_id},
            )
        session_id = header_sid
    return ExecuteRequest(inputs, mode, session_id, context)
