"""The shared parts of the document: component schemas, parameters, the error envelope as a
response, and :func:`add_responses` for plugins that answer on every route (auth: 401/403).

Plugins document their own routes in the ``openapi_spec`` hook with these, so their error
responses are the same envelope as the core's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from apispec import APISpec

__all__ = [
    "COMPONENT_SCHEMAS",
    "ERROR_DESCRIPTIONS",
    "IDEMPOTENCY_KEY_SCHEMA",
    "NULLABLE_STRING",
    "SESSION_ID_SCHEMA",
    "SSE_EVENT",
    "add_responses",
    "error_response",
    "error_responses",
    "header",
    "json_content",
    "operations",
    "path_param",
    "path_params",
    "query_param",
    "ref",
]

_PATH_PARAMS = re.compile(r"\{([^}]+)\}")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, unknown, missing or wrong-typed fields",
    401: "Authentication required",
    403: "Forbidden: a cross-site browser request to a state-changing route, or not allowed "
    "for this actor",
    404: "Not found",
    405: "Method not allowed",
    408: "The request body did not arrive within body_timeout",
    409: "Conflict: the execution was cancelled or already finished, or a request with the "
    "same Idempotency-Key is still running",
    413: "Request body too large",
    415: "Unsupported media type for the request body",
    422: "Idempotency-Key reused with a different request",
    429: "Rate limit exceeded (see Retry-After)",
    500: "The workflow raised, or an internal error",
    503: "Service unavailable: overloaded or a store is down (see Retry-After)",
    504: "The workflow did not finish within its timeout",
}
RETRY_AFTER_STATUSES = frozenset({429, 503})

# Schemathesis checks each server-sent event against the ``text/event-stream`` schema.
SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event; `data` is JSON text",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string"},
    },
}

NULLABLE_STRING = {"type": ["string", "null"]}
SESSION_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255}

COMPONENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "Error class, e.g. ValidationError"},
            "message": {"type": "string"},
            "details": {"description": "Structured details (field, expected, received, errors)"},
        },
        "required": ["type", "message"],
    },
    "ErrorEnvelope": {
        "type": "object",
        "properties": {
            "success": {"const": False},
            "error": {"$ref": "#/components/schemas/Error"},
            "workflow_id": NULLABLE_STRING,
            "timestamp": {"type": "string"},
        },
        "required": ["success", "error"],
    },
    "ExecutionAccepted": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "workflow_id": {"type": "string"},
            "status": {"type": "string"},
            "session_id": {"type": "string"},
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["success", "workflow_id", "status"],
    },
    "Execution": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "workflow_id": {"type": "string"},
            "name": {"type": "string"},
            "mode": {"type": "string"},
            "status": {
                "type": "string",
                "enum": [
                    "queued",
                    "running",
                    "succeeded",
                    "failed",
                    "timed_out",
                    "cancelled",
                    "interrupted",
                ],
            },
            "attempts": {"type": "integer", "minimum": 1},
            "inputs": {},
            "result": {},
            "error": {},
            "created_at": NULLABLE_STRING,
            "started_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "session_id": NULLABLE_STRING,
            "request_id": NULLABLE_STRING,
            "trace_id": {
                **NULLABLE_STRING,
                "description": "The W3C trace the execution belongs to",
            },
            "trigger": {"type": "string", "description": "schedule: started by a schedule"},
            "schedule_id": {"type": "string", "description": "The schedule that started it"},
            "webhook": {"$ref": "#/components/schemas/WebhookDelivery"},
            "truncated": {
                "type": "array",
                "items": {"type": "string", "enum": ["inputs", "result", "error"]},
                "description": "In GET /executions only: the fields above 4 KB of JSON, left"
                " out (null) of this list item; GET /executions/{id} has them",
            },
        },
        "required": ["id", "name", "status"],
    },
    "WebhookDelivery": {
        "type": "object",
        "description": "The completion webhook of an execution that named one",
        "properties": {
            "url": {"type": "string"},
            "state": {"type": "string", "enum": ["waiting", "pending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"]},
            "last_error": {"type": "string"},
            "next_attempt_at": {"type": "number"},
            "delivered_at": {"type": "number"},
        },
        "required": ["url", "state", "attempts"],
    },
    "Schedule": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "inputs": {"type": "object"},
            "cron": NULLABLE_STRING,
            "every": {"type": ["number", "null"]},
            "timezone": {"type": "string"},
            "paused": {"type": "boolean"},
            "catchup": {"type": "string", "enum": ["skip", "one"]},
            "webhook": NULLABLE_STRING,
            "session_id": NULLABLE_STRING,
            "declared": {"type": "boolean"},
            "next_run": NULLABLE_STRING,
            "last_run": NULLABLE_STRING,
            "last_execution_id": NULLABLE_STRING,
            "last_error": {"type": "string"},
            "created_at": NULLABLE_STRING,
            "updated_at": NULLABLE_STRING,
        },
        "required": ["id", "workflow", "next_run"],
    },
    "ScheduleList": {
        "type": "object",
        "properties": {
            "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}
        },
        "required": ["schedules"],
    },
    "ScheduleChange": {
        "type": "object",
        "description": "Fields of a schedule to create or change (exactly one of cron, every on"
        " creation; workflow on creation only)",
        "properties": {
            "workflow": {"type": "string"},
            "inputs": {"type": "object"},
            "cron": {"type": "string", "description": "5 fields, or 6 with seconds first"},
            "every": {"type": "number", "minimum": 1, "maximum": 31622400},
            "timezone": {"type": "string", "default": "UTC"},
            "paused": {"type": "boolean", "default": False},
            "catchup": {"type": "string", "enum": ["skip", "one"], "default": "skip"},
            "webhook": {"type": "string", "format": "uri"},
            "session_id": SESSION_ID_SCHEMA,
        },
        "additionalProperties": False,
    },
    "ExecutionList": {
        "type": "object",
        "properties": {
            "executions": {"type": "array", "items": {"$ref": "#/components/schemas/Execution"}},
            "next_cursor": NULLABLE_STRING,
        },
        "required": ["executions"],
    },
    "Session": {
        "type": "object",
        "properties": {
            "session_id": {"type": "string"},
            "state": {"type": "object"},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "expires_at": {"type": "string"},
            "actor": {},
            "ttl": {"type": "number"},
        },
        "required": ["session_id", "state"],
    },
    "WorkflowSchema": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": NULLABLE_STRING,
            "inputs": {"type": "object", "additionalProperties": {"type": "object"}},
            "outputs": {"type": "object"},
        },
        "required": ["name", "inputs", "outputs"],
    },
    "WorkflowInfo": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": NULLABLE_STRING,
            "kind": {"type": "string"},
            "inputs": {"type": "object"},
            "outputs": {"type": "object"},
            "endpoints": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "inputs", "outputs"],
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "version": {"type": "string"},
            "uptime": {"type": "number"},
            "workflows": {"type": "integer"},
            "active_sessions": {"type": ["integer", "null"]},
        },
        "required": ["status"],
    },
    "HealthDetailed": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
            "version": {"type": "string"},
            "components": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"status": {"type": "string"}},
                },
            },
        },
        "required": ["status"],
    },
    "Plugins": {
        "type": "object",
        "properties": {
            "plugins": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "version": NULLABLE_STRING,
                        "hooks": {"type": "array", "items": {"type": "string"}},
                        "builtin": {"type": "boolean"},
                    },
                },
            }
        },
        "required": ["plugins"],
    },
}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response with ``schema`` as its ``application/json`` body."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(status: int) -> dict[str, Any]:
    """The error envelope as the response for ``status`` (with ``Retry-After`` where sent)."""
    response = json_content(ref("ErrorEnvelope"), ERROR_DESCRIPTIONS.get(status, "Error"))
    if status in RETRY_AFTER_STATUSES:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
        }
    return response


def error_responses(*statuses: int) -> dict[str, Any]:
    """``{"<status>": error_response(status)}`` for each status, in order."""
    return {str(code): error_response(code) for code in sorted(set(statuses))}


def operations(spec: APISpec) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` for every operation in ``spec``, to edit in place.

    For plugins, in ``openapi_spec``: the core's and the plugins' operations are in ``spec`` by
    then (those of plugins whose hook runs later are not).
    """
    # apispec keeps the paths it serialises in the mapping ``to_dict()`` returns (not a copy).
    for path, item in spec.to_dict()["paths"].items():
        for method, operation in item.items():
            if method in _METHODS and isinstance(operation, dict):
                yield path, method, operation


def add_responses(
    spec: APISpec,
    responses: Mapping[str, Any],
    where: Callable[[str, str], bool] | None = None,
) -> None:
    """Add ``responses`` to every operation of ``spec`` that ``where(path, method)`` accepts.

    For plugins that answer on every route, such as authentication's 401 and 403; a response
    an operation already documents is kept.
    """
    for path, method, operation in operations(spec):
        if where is None or where(path, method):
            documented = operation.setdefault("responses", {})
            for status, response in responses.items():
                documented.setdefault(str(status), response)


def header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def query_param(
    name: str, schema: dict[str, Any], description: str | None = None
) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def path_params(path: str) -> list[dict[str, Any]]:
    """A string parameter for each ``{name}`` of a path template."""
    return [path_param(name) for name in _PATH_PARAMS.findall(path)]
