"""The OpenAPI 3.1 document of an app, built with apispec from what the app actually serves.

Why OpenAPI 3.1: workflow input schemas are JSON Schema (``InputSchema.json_schema()``: ``anyOf``
with ``{"type": "null"}``, ``additionalProperties``), which 3.1 takes as is, and Swagger UI 5,
openapi-spec-validator and schemathesis all read it.

Why apispec and not aiohttp-apispec: see DESIGN.md (Swagger 2.0 only, pre-release pins, handler
mutation). The document is made from the registry and the route table, so it cannot drift from
what the server does:

* each workflow gets its own ``POST /workflows/<name>/execute`` with its input schema, its result
  type in the success envelope, 202 for ``mode: async``, ``text/event-stream`` for ``mode: stream``
  and the error envelope for every status the route can answer;
* core, execution, session and batch routes have hand-written operations (:data:`KNOWN_ROUTES`);
* custom endpoints are described from ``handler.nexus_endpoint`` (path and query parameters with
  types and constraints, body, docstring);
* any other route still gets a minimal operation (path parameters, docstring, error envelope);
* plugins edit the ``APISpec`` through the ``openapi_spec`` hook before it is serialised.

A handler with ``openapi_hidden = True`` (the docs UI itself) is left out. No aiohttp import
here: :func:`build_openapi` works from the app's routes or, without an app (the CLI), from the
``register_routes`` hook.
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from nexus_aio import __version__

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus
    from nexus_aio.workflows.workflow import CompiledWorkflow

__all__ = ["OPENAPI_VERSION", "RouteInfo", "build_openapi", "routes_of_app", "routes_of_hooks"]

OPENAPI_VERSION = "3.1.0"
EXECUTE_PATH = "/workflows/{name}/execute"
SKIPPED_METHODS = frozenset({"HEAD", "OPTIONS", "*"})
_PARAM_REGEX = re.compile(r"\{([^}:]+):[^}]*\}")
_PATH_PARAMS = re.compile(r"\{([^}]+)\}")

ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, unknown, missing or wrong-typed fields",
    401: "Authentication required",
    403: "Not allowed for this actor",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the resource's state",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Idempotency-Key reused with a different request",
    429: "Rate limit exceeded (see Retry-After)",
    500: "The workflow raised, or an internal error",
    503: "Service unavailable: overloaded or a store is down (see Retry-After)",
    504: "The workflow did not finish within its timeout",
}
RETRY_AFTER_STATUSES = frozenset({429, 503})
EXECUTE_ERRORS = (400, 404, 413, 422, 429, 500, 503, 504)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One served route: method, path template without ``api_prefix``, and its handler."""

    method: str
    path: str
    handler: Any


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

# -- shared components ---------------------------------------------------------------------------
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
            "inputs": {},
            "result": {},
            "error": {},
            "created_at": NULLABLE_STRING,
            "started_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "session_id": NULLABLE_STRING,
            "request_id": NULLABLE_STRING,
        },
        "required": ["id", "name", "status"],
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
    "BatchRequest": {
        "type": "object",
        "properties": {
            "workflows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "inputs": {"type": "object"},
                        "session_id": SESSION_ID_SCHEMA,
                        "context": {"type": "object"},
                    },
                    "required": ["name"],
                },
            }
        },
        "required": ["workflows"],
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(status: int) -> dict[str, Any]:
    """The error envelope as the response for ``status`` (with ``Retry-After`` where sent)."""
    response = _json(_ref("ErrorEnvelope"), ERROR_DESCRIPTIONS.get(status, "Error"))
    if status in RETRY_AFTER_STATUSES:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
        }
    return response


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMS.findall(path)
    ]


def _first_line(text: str | None) -> str | None:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else None


# -- the builder ---------------------------------------------------------------------------------
class _Builder:
    """One document: collects operations per path, then hands the spec to plugins."""

    def __init__(self, nexus: Nexus) -> None:
        self.nexus = nexus
        settings = nexus.settings
        self.prefix: str = settings.api_prefix
        self.auth = bool(settings.enable_auth)
        self.spec = APISpec(
            title="nexus_aio",
            version=__version__,
            openapi_version=OPENAPI_VERSION,
            plugins=[MarshmallowPlugin()],
            info={"description": "Registered workflows as a REST API."},
        )
        for name, schema in COMPONENT_SCHEMAS.items():
            self.spec.components.schema(name, schema)
        self.paths: dict[str, dict[str, Any]] = {}
        self.registered: set[str] = set()

    def errors(self, *statuses: int, auth: bool = True) -> dict[str, Any]:
        codes = set(statuses)
        if auth and self.auth:
            codes |= {401, 403}
        return {str(code): error_response(code) for code in sorted(codes)}

    def add(self, method: str, path: str, operation: dict[str, Any]) -> None:
        self.paths.setdefault(self.prefix + path, {})[method.lower()] = operation

    # -- workflows ---------------------------------------------------------------------------
    def workflow_components(self, wf: CompiledWorkflow) -> str:
        """Register the workflow's inputs, request and result schemas once; their name stem."""
        key = _component_name(wf.name)
        if key in self.registered:
            return key
        self.registered.add(key)
        self.spec.components.schema(f"{key}Inputs", wf.schema.json_schema())
        request = {
            "type": "object",
            "properties": {
                "inputs": _ref(f"{key}Inputs"),
                "session_id": {**SESSION_ID_SCHEMA, "description": "Continue a session"},
                "context": {"type": "object", "description": "Passed to the workflow's Context"},
                "mode": {"type": "string", "enum": ["sync", "stream", "async"], "default": "sync"},
            },
            "additionalProperties": False,
        }
        if wf.schema.fields and any(f.required for f in wf.schema.fields.values()):
            request["required"] = ["inputs"]
        self.spec.components.schema(f"{key}ExecuteRequest", request)
        self.spec.components.schema(f"{key}Result", _success_envelope(wf.outputs))
        return key

    def workflow(self, wf: CompiledWorkflow) -> None:
        key = self.workflow_components(wf)
        path = f"/workflows/{wf.name}/execute"
        responses = {
            "200": {
                "description": "Finished (sync), or the event stream (mode: stream)",
                "content": {
                    "application/json": {"schema": _ref(f"{key}Result")},
                    "text/event-stream": {
                        "schema": SSE_EVENT,
                        "example": 'id: 1\nevent: start\ndata: {"workflow_id": "wf-..."}\n\n',
                    },
                },
            },
            "202": _json(_ref("ExecutionAccepted"), "Accepted (mode: async): poll or follow it"),
            **self.errors(*EXECUTE_ERRORS),
        }
        self.add(
            "post",
            path,
            {
                "operationId": f"execute_{key}",
                "tags": ["workflows"],
                "summary": f"Run {wf.name}",
                "description": wf.description or f"Run the workflow {wf.name!r}.",
                "parameters": [
                    _header(
                        "X-Session-ID",
                        "Continue a session (same as body session_id)",
                        SESSION_ID_SCHEMA,
                    ),
                    _header(
                        "Idempotency-Key",
                        "Replay the first response of a repeated request",
                        IDEMPOTENCY_KEY_SCHEMA,
                    ),
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref(f"{key}ExecuteRequest")}},
                },
                "responses": responses,
            },
        )

    # -- known and other routes --------------------------------------------------------------
    def route(self, route: RouteInfo) -> None:
        if getattr(route.handler, "openapi_hidden", False):
            return
        if route.path == EXECUTE_PATH:
            for wf in self.nexus.workflows.values():
                if route.method == "POST":
                    self.workflow(wf)
                elif route.method == "GET":
                    self.add("get", f"/workflows/{wf.name}/execute", self.execute_get(wf))
            return
        endpoint = getattr(route.handler, "nexus_endpoint", None)
        known = KNOWN_ROUTES.get((route.method, route.path))
        if endpoint is not None:
            operation = self.endpoint(route, endpoint)
        elif known is not None:
            operation = known(self)
        else:
            operation = self.minimal(route)
        self.add(route.method, route.path, operation)

    def execute_get(self, wf: CompiledWorkflow) -> dict[str, Any]:
        key = self.workflow_components(wf)
        return {
            "operationId": f"execute_{key}_get",
            "tags": ["workflows"],
            "summary": f"Run {wf.name} from a URL (browser EventSource)",
            "description": "Inputs as `inputs=<JSON object>` or one query parameter each.",
            "parameters": [
                _query("mode", {"type": "string", "enum": ["sync", "stream", "async"]}),
                _query("session_id", SESSION_ID_SCHEMA),
                _query("inputs", {"type": "string"}, "The inputs as a JSON object"),
            ],
            "responses": {
                "200": {
                    "description": "Finished (sync), or the event stream (mode: stream)",
                    "content": {
                        "application/json": {"schema": _ref(f"{key}Result")},
                        "text/event-stream": {"schema": SSE_EVENT},
                    },
                },
                "202": _json(_ref("ExecutionAccepted"), "Accepted (mode: async)"),
                **self.errors(*EXECUTE_ERRORS),
            },
        }

    def minimal(self, route: RouteInfo) -> dict[str, Any]:
        doc = inspect.getdoc(route.handler)
        operation: dict[str, Any] = {
            "tags": ["plugins"],
            "responses": {"200": {"description": "Success"}, **self.errors(400, 404, 500)},
        }
        summary = _first_line(doc)
        if summary:
            operation["summary"] = summary
            operation["description"] = doc
        params = _path_params(route.path)
        if params:
            operation["parameters"] = params
        return operation

    def endpoint(self, route: RouteInfo, meta: Any) -> dict[str, Any]:
        """A custom endpoint from the metadata the endpoints layer attaches to its handler."""
        doc = _field(meta, "description") or inspect.getdoc(route.handler)
        params = []
        for param in _field(meta, "parameters") or ():
            params.append(_endpoint_param(param))
        documented = {p["name"] for p in params if p["in"] == "path"}
        params += [p for p in _path_params(route.path) if p["name"] not in documented]
        operation: dict[str, Any] = {
            "tags": ["endpoints"],
            "responses": {"200": {"description": "Success"}, **self.errors(400, 404, 429, 500)},
        }
        summary = _first_line(doc)
        if summary:
            operation["summary"] = summary
            operation["description"] = doc
        if params:
            operation["parameters"] = params
        # A JSON Schema dict, or a marshmallow schema that the MarshmallowPlugin resolves.
        body = _field(meta, "body_schema", "body")
        if body is not None and route.method in ("POST", "PUT", "PATCH"):
            body_info = _field(meta, "body")
            required = _field(body_info, "required") if body_info is not None else None
            operation["requestBody"] = {
                "required": required is not False,
                "content": {"application/json": {"schema": body}},
            }
            operation["responses"]["413"] = error_response(413)
        return operation

    def build(self, routes: Iterable[RouteInfo]) -> dict[str, Any]:
        for route in routes:
            if route.method not in SKIPPED_METHODS:
                self.route(route)
        for path in sorted(self.paths):
            self.spec.path(path=path, operations=self.paths[path])
        self.nexus.hooks.openapi_spec(self.spec)
        return self.spec.to_dict()


# -- operations of the known routes --------------------------------------------------------------
def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _op(
    b: _Builder,
    op_id: str,
    tag: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    params: list[dict[str, Any]] | None = None,
    *,
    status: str = "200",
    auth: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "responses": {status: ok, **b.errors(*errors, auth=auth)},
    }
    if params:
        operation["parameters"] = params
    return operation


def _schema_op(b: _Builder) -> dict[str, Any]:
    names = sorted(b.nexus.workflows)
    name = _path("name", {"type": "string", "examples": names[:1]} if names else None)
    ok = _json(_ref("WorkflowSchema"), "The workflow's inputs and outputs")
    return _op(b, "get_schema", "workflows", "A workflow's input/output schema", ok, (404,), [name])


def _list_op(b: _Builder) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": _ref("WorkflowInfo")}
    ok = _json(schema, "Every workflow by name")
    return _op(b, "list_workflows", "workflows", "List workflows", ok, ())


def _health_op(b: _Builder) -> dict[str, Any]:
    ok = _json(_ref("Health"), "The service is up")
    return _op(b, "health", "system", "Health check", ok, (), auth=False)


def _health_detailed_op(b: _Builder) -> dict[str, Any]:
    ok = _json(_ref("HealthDetailed"), "Every component's status")
    return _op(b, "health_detailed", "system", "Detailed health check", ok, ())


def _plugins_op(b: _Builder) -> dict[str, Any]:
    ok = _json(_ref("Plugins"), "Installed plugins")
    return _op(b, "list_plugins", "system", "Installed plugins with their hooks", ok, ())


def _openapi_op(b: _Builder) -> dict[str, Any]:
    ok = _json({"type": "object"}, "This document")
    return _op(b, "openapi", "system", "The OpenAPI document", ok, (), auth=False)


def _executions_list_op(b: _Builder) -> dict[str, Any]:
    params = [
        _query("workflow", {"type": "string"}, "Only this workflow's executions"),
        _query("status", {"type": "string"}, "Only executions in this status"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
    ]
    ok = _json(_ref("ExecutionList"), "Executions, newest first")
    return _op(b, "list_executions", "executions", "Execution history", ok, (400,), params)


EXECUTION_ID = _path("execution_id")


def _execution_get_op(b: _Builder) -> dict[str, Any]:
    wait = _query(
        "wait",
        {"type": "number", "minimum": 0, "maximum": 60},
        "Hold the request up to this many seconds until the execution finishes",
    )
    ok = _json(_ref("Execution"), "The execution record")
    return _op(
        b, "get_execution", "executions", "An execution", ok, (400, 404), [EXECUTION_ID, wait]
    )


def _execution_events_op(b: _Builder) -> dict[str, Any]:
    params = [
        EXECUTION_ID,
        _header("Last-Event-ID", "Resume after this event id"),
        _query("last_event_id", {"type": "integer", "minimum": 0}, "Resume after this event"),
    ]
    ok = {
        "description": "Server-sent events: stored ones, then live ones until the end",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    }
    return _op(b, "execution_events", "executions", "An execution's events", ok, (400, 404), params)


def _execution_cancel_op(b: _Builder) -> dict[str, Any]:
    ok = _json(_ref("Execution"), "Cancelled")
    return _op(
        b,
        "cancel_execution",
        "executions",
        "Cancel a queued or running execution",
        ok,
        (404, 409),
        [EXECUTION_ID],
    )


SESSION_ID = _path("session_id", SESSION_ID_SCHEMA)


def _session_get_op(b: _Builder) -> dict[str, Any]:
    ok = _json(_ref("Session"), "The session's state and times")
    return _op(b, "get_session", "sessions", "A session", ok, (400, 404), [SESSION_ID])


def _session_delete_op(b: _Builder) -> dict[str, Any]:
    ok = {"description": "Deleted"}
    return _op(
        b,
        "delete_session",
        "sessions",
        "End a session",
        ok,
        (400, 404),
        [SESSION_ID],
        status="204",
    )


def _batch_op(b: _Builder) -> dict[str, Any]:
    operation = _op(
        b,
        "execute_batch",
        "workflows",
        "Run several workflows in one request",
        _json({"type": "object"}, "One envelope per item, in order"),
        (400, 413, 429),
    )
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": _ref("BatchRequest")}},
    }
    return operation


KNOWN_ROUTES: dict[tuple[str, str], Callable[[_Builder], dict[str, Any]]] = {
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
    ("POST", "/workflows/batch"): _batch_op,
}


# -- helpers ---------------------------------------------------------------------------------------
def _component_name(name: str) -> str:
    """A workflow name as a component-name stem (components allow ``[A-Za-z0-9._-]``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_-]", cleaned)) or "W"


def _success_envelope(outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "result": outputs.get("result", {}),
            "workflow_id": {"type": "string"},
            "execution_time": {"type": "number"},
            "timestamp": {"type": "string"},
            "session_id": {"type": "string"},
        },
        "required": ["success", "result", "workflow_id"],
    }


def _field(obj: Any, *names: str) -> Any:
    """Read metadata from an object or a mapping, whichever the endpoints layer supplies."""
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


CONSTRAINT_KEYWORDS = {
    "pattern": "pattern",
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "min_length": "minLength",
    "max_length": "maxLength",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "exclusiveMinimum": "exclusiveMinimum",
    "exclusiveMaximum": "exclusiveMaximum",
}


def _endpoint_param(param: Any) -> dict[str, Any]:
    location = _field(param, "in", "in_", "location", "source") or "query"
    raw = _field(param, "schema", "json_schema", "type")
    schema = dict(raw) if isinstance(raw, dict) else {"type": raw} if isinstance(raw, str) else {}
    constraints = _field(param, "constraints")
    for key, value in (constraints if isinstance(constraints, dict) else {}).items():
        keyword = CONSTRAINT_KEYWORDS.get(key)
        if keyword is not None and value is not None:
            schema[keyword] = value
    required = bool(_field(param, "required")) or location == "path"
    default = _field(param, "default")
    if not required and default is not None and _is_json_scalar(default):
        schema.setdefault("default", default)
    out: dict[str, Any] = {
        "name": str(_field(param, "name")),
        "in": location,
        "required": required,
        "schema": schema,
    }
    description = _field(param, "description")
    if description:
        out["description"] = description
    return out


def _is_json_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def normalize_path(path: str, prefix: str = "") -> str:
    """A route path without ``api_prefix`` and without regexes in its placeholders."""
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :] or "/"
    return _PARAM_REGEX.sub(r"{\1}", path)


def routes_of_app(app: Any, prefix: str = "") -> list[RouteInfo]:
    """The routes an aiohttp application serves (duck-typed: no aiohttp import here)."""
    out = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        out.append(
            RouteInfo(route.method, normalize_path(resource.canonical, prefix), route.handler)
        )
    return out


def routes_of_hooks(nexus: Nexus) -> list[RouteInfo]:
    """The routes plugins would register (for a document without a built app, e.g. the CLI)."""
    return [
        RouteInfo(route.method, normalize_path(route.path), route.handler)
        for route in nexus.hooks.register_routes()
    ]


_cache: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()


def build_openapi(nexus: Nexus, routes: Iterable[RouteInfo] | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``nexus`` (cached per app; treat the result as read-only).

    ``routes`` defaults to the built app's routes, else to what ``register_routes`` yields.
    """
    app = nexus.app
    if routes is None:
        if app is not None:
            routes = routes_of_app(app, nexus.settings.api_prefix)
        else:
            routes = routes_of_hooks(nexus)
    routes = list(routes)
    key = (
        nexus.settings,
        tuple(nexus.workflows),
        tuple((r.method, r.path) for r in routes),
    )
    cached = _cache.get(nexus)
    if cached is not None and cached[0] == key:
        return cached[1]
    document = _Builder(nexus).build(routes)
    _cache[nexus] = (key, document)
    return document
