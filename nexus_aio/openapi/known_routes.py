"""Hand-written operations for the core's fixed routes (:data:`KNOWN_ROUTES`): discovery, health,
plugins, this document, executions, sessions and schedules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nexus_aio.openapi.components import (
    SESSION_ID_SCHEMA,
    SSE_EVENT,
    error_responses,
    header,
    json_content,
    path_param,
    query_param,
    ref,
)

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = ["KNOWN_ROUTES"]

EXECUTION_ID = path_param("execution_id")
SESSION_ID = path_param("session_id", SESSION_ID_SCHEMA)
SCHEDULE_ID = path_param("schedule_id")


def _op(
    op_id: str,
    tag: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    params: list[dict[str, Any]] | None = None,
    *,
    status: str = "200",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "responses": {status: ok, **error_responses(*errors)},
    }
    if params:
        operation["parameters"] = params
    return operation


def _schema_op(nexus: Nexus) -> dict[str, Any]:
    names = sorted(nexus.workflows)
    name = path_param("name", {"type": "string", "examples": names[:1]} if names else None)
    ok = json_content(ref("WorkflowSchema"), "The workflow's inputs and outputs")
    return _op("get_schema", "workflows", "A workflow's input/output schema", ok, (404,), [name])


def _list_op(nexus: Nexus) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": ref("WorkflowInfo")}
    ok = json_content(schema, "Every workflow by name")
    return _op("list_workflows", "workflows", "List workflows", ok, ())


def _health_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Health"), "The service is up")
    return _op("health", "system", "Health check", ok, ())


def _health_detailed_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("HealthDetailed"), "Every component's status")
    return _op("health_detailed", "system", "Detailed health check", ok, ())


def _plugins_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Plugins"), "Installed plugins")
    return _op("list_plugins", "system", "Installed plugins with their hooks", ok, ())


def _openapi_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content({"type": "object"}, "This document")
    return _op("openapi", "system", "The OpenAPI document", ok, ())


def _executions_list_op(nexus: Nexus) -> dict[str, Any]:
    params = [
        query_param("workflow", {"type": "string"}, "Only this workflow's executions"),
        query_param("status", {"type": "string"}, "Only executions in this status"),
        query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        query_param("cursor", {"type": "string"}, "next_cursor of the previous page"),
    ]
    ok = json_content(ref("ExecutionList"), "Executions, newest first")
    return _op("list_executions", "executions", "Execution history", ok, (400, 503), params)


def _execution_get_op(nexus: Nexus) -> dict[str, Any]:
    wait = query_param(
        "wait",
        {"type": "number", "minimum": 0, "maximum": 60},
        "Hold the request up to this many seconds until the execution finishes",
    )
    ok = json_content(ref("Execution"), "The execution record")
    params = [EXECUTION_ID, wait]
    return _op("get_execution", "executions", "An execution", ok, (400, 404, 503), params)


def _execution_events_op(nexus: Nexus) -> dict[str, Any]:
    params = [
        EXECUTION_ID,
        header("Last-Event-ID", "Resume after this event id"),
        query_param(
            "last_event_id",
            {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            "Resume after this event",
        ),
    ]
    ok = {
        "description": "Server-sent events: stored ones, then live ones until the end",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    }
    return _op(
        "execution_events", "executions", "An execution's events", ok, (400, 404, 503), params
    )


def _execution_cancel_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Execution"), "Cancelled")
    return _op(
        "cancel_execution",
        "executions",
        "Cancel a queued or running execution",
        ok,
        (404, 409, 503),
        [EXECUTION_ID],
    )


def _session_get_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Session"), "The session's state and times")
    return _op("get_session", "sessions", "A session", ok, (400, 404, 503), [SESSION_ID])


def _session_delete_op(nexus: Nexus) -> dict[str, Any]:
    ok = {"description": "Deleted"}
    return _op(
        "delete_session",
        "sessions",
        "End a session",
        ok,
        (400, 404, 503),
        [SESSION_ID],
        status="204",
    )


def _with_body(operation: dict[str, Any], schema: str, required: list[str]) -> dict[str, Any]:
    body = {"allOf": [ref(schema)], "required": required} if required else ref(schema)
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": body}},
    }
    return operation


def _schedule_create_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Schedule"), "The schedule, with its id and next_run")
    op = _op(
        "create_schedule",
        "schedules",
        "Run a workflow on a cron expression or every N seconds",
        ok,
        (400, 503),
        status="201",
    )
    return _with_body(op, "ScheduleChange", ["workflow"])


def _schedule_list_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("ScheduleList"), "Every schedule, oldest first")
    return _op("list_schedules", "schedules", "List schedules", ok, (503,))


def _schedule_get_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Schedule"), "The schedule")
    return _op("get_schedule", "schedules", "A schedule", ok, (404, 503), [SCHEDULE_ID])


def _schedule_patch_op(nexus: Nexus) -> dict[str, Any]:
    ok = json_content(ref("Schedule"), "The changed schedule")
    op = _op(
        "change_schedule",
        "schedules",
        "Pause, resume or change a schedule",
        ok,
        (400, 404, 503),
        [SCHEDULE_ID],
    )
    return _with_body(op, "ScheduleChange", [])


def _schedule_delete_op(nexus: Nexus) -> dict[str, Any]:
    return _op(
        "delete_schedule",
        "schedules",
        "Delete a schedule",
        {"description": "Deleted"},
        (404, 503),
        [SCHEDULE_ID],
        status="204",
    )


KNOWN_ROUTES: dict[tuple[str, str], Callable[[Nexus], dict[str, Any]]] = {
    ("GET", "/workflows/{name}/schema"): _schema_op,
    ("GET", "/workflows"): _list_op,
    ("GET", "/health"): _health_op,
    ("GET", "/health/detailed"): _health_detailed_op,
    ("GET", "/plugins"): _plugins_op,
    ("GET", "/openapi.json"): _openapi_op,
    ("GET", "/executions"): _executions_list_op,
    ("GET", "/executions/{execution_id}"): _execution_get_op,
    ("GET", "/executions/{execution_id}/events"): _execution_events_op,
    ("DELETE", "/executions/{execution_id}"): _execution_cancel_op,
    ("GET", "/sessions/{session_id}"): _session_get_op,
    ("DELETE", "/sessions/{session_id}"): _session_delete_op,
    ("POST", "/schedules"): _schedule_create_op,
    ("GET", "/schedules"): _schedule_list_op,
    ("GET", "/schedules/{schedule_id}"): _schedule_get_op,
    ("PATCH", "/schedules/{schedule_id}"): _schedule_patch_op,
    ("DELETE", "/schedules/{schedule_id}"): _schedule_delete_op,
}
"""The operation of each core route, by (method, path without ``api_prefix``)."""
