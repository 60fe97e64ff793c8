"""The OpenAPI 3.1 document of an app, built with apispec from what the app actually serves.

Why OpenAPI 3.1: workflow input schemas are JSON Schema (``InputSchema.json_schema()``: ``anyOf``
with ``{"type": "null"}``, ``additionalProperties``), which 3.1 takes as is, and Swagger UI 5,
openapi-spec-validator and schemathesis all read it.

Why apispec and not aiohttp-apispec: see DESIGN.md (Swagger 2.0 only, pre-release pins, handler
mutation). The document is made from the registry and the route table, so it cannot drift from
what the server does:

* each workflow gets its own ``POST /workflows/<name>/execute`` with its input schema, its result
  type in the success envelope, 202 for ``mode: async``, ``text/event-stream`` for ``mode: stream``
  and the error envelope for every status the route can answer (here);
* the core's execution, session and system routes have hand-written operations
  (:mod:`nexus_aio.openapi.known_routes`);
* custom endpoints are described from ``handler.nexus_endpoint``, and any other route gets a
  minimal operation (:mod:`nexus_aio.openapi.endpoints`);
* plugins document their own routes and concerns (batch, auth) through the ``openapi_spec``
  hook before the document is serialised; the core knows no plugin.

A handler with ``openapi_hidden = True`` (the docs UI itself) is left out. No aiohttp import
here: :func:`build_openapi` works from the app's routes or, without an app (the CLI), from the
``register_routes`` hook.
"""

from __future__ import annotations

import re
import weakref
from collections import ChainMap
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from nexus_aio.openapi.components import (
    COMPONENT_SCHEMAS,
    IDEMPOTENCY_KEY_SCHEMA,
    SESSION_ID_SCHEMA,
    SSE_EVENT,
    error_responses,
    header,
    json_content,
    query_param,
    ref,
)
from nexus_aio.openapi.endpoints import endpoint_operation, minimal_operation
from nexus_aio.openapi.known_routes import KNOWN_ROUTES
from nexus_aio.openapi.routes import RouteInfo, path_segment, routes_of_app, routes_of_hooks
from nexus_aio.openapi.statuses import document_statuses, unique_operation_ids
from nexus_aio.version import __version__
from nexus_aio.workflows.defs import has_defs, hoist_defs

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus
    from nexus_aio.workflows.workflow import CompiledWorkflow

__all__ = ["OPENAPI_VERSION", "build_openapi"]

OPENAPI_VERSION = "3.1.0"
EXECUTE_PATH = "/workflows/{name}/execute"
# 403: cross-origin; 408/413/415: the body (POST); 409: cancelled, or an Idempotency-Key
# whose request is still running; 422: Idempotency-Key reused. 429 is added where a limit
# applies (statuses.py), 401/403 by the auth plugin.
EXECUTE_ERRORS = (400, 403, 404, 409, 422, 500, 503, 504)
WORKFLOW_COMPONENTS = ("Inputs", "ExecuteRequest", "Upload", "Result")
SKIPPED_METHODS = frozenset({"HEAD", "OPTIONS", "*"})


class _Builder:
    """One document: collects operations per path, then hands the spec to plugins."""

    def __init__(self, nexus: Nexus) -> None:
        self.nexus = nexus
        self.prefix: str = nexus.settings.api_prefix
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
        self.keys = workflow_keys(nexus.workflows)
        # Names pydantic models hoisted from one workflow must not take from another.
        self.reserved: dict[str, Any] = {
            key + suffix: _RESERVED for key in self.keys.values() for suffix in WORKFLOW_COMPONENTS
        }

    def add(self, method: str, path: str, operation: dict[str, Any]) -> None:
        self.paths.setdefault(self.prefix + path, {})[method.lower()] = operation

    # -- workflows ---------------------------------------------------------------------------
    def workflow_components(self, wf: CompiledWorkflow) -> str:
        """Register the workflow's inputs, request and result schemas once; their name stem."""
        key = self.keys[wf.name]
        if key in self.registered:
            return key
        self.registered.add(key)
        self.spec.components.schema(f"{key}Inputs", self.fold_defs(wf.schema.json_schema()))
        request = {
            "type": "object",
            "properties": {
                "inputs": ref(f"{key}Inputs"),
                "session_id": {**SESSION_ID_SCHEMA, "description": "Continue a session"},
                "context": {"type": "object", "description": "Passed to the workflow's Context"},
                "mode": {"type": "string", "enum": ["sync", "stream", "async"], "default": "sync"},
                "webhook": {
                    "type": ["string", "null"],
                    "format": "uri",
                    "maxLength": 2048,
                    "description": "Async and stream runs: POST the final execution record"
                    " here, signed (Standard Webhooks); needs the server's webhook_secret",
                },
            },
            "additionalProperties": False,
        }
        files = wf.schema.file_inputs
        if any(f.required for n, f in wf.schema.fields.items() if n not in files):
            request["required"] = ["inputs"]
        self.spec.components.schema(f"{key}ExecuteRequest", request)
        if files:
            self.spec.components.schema(f"{key}Upload", _upload_schema(wf, request))
        self.spec.components.schema(f"{key}Result", self.fold_defs(_success_envelope(wf.outputs)))
        return key

    def fold_defs(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` with its ``$defs`` (pydantic models) moved to ``components/schemas`` and
        its ``#/$defs/`` references rewritten; a name already taken by a different schema gets a
        number (``Address2``)."""
        if not has_defs(schema):
            return schema
        components = self.spec.components
        taken: ChainMap[str, Any] = ChainMap(components.schemas, self.reserved)
        return hoist_defs(schema, taken, "#/components/schemas/", components.schema)

    def execute_post(self, wf: CompiledWorkflow) -> dict[str, Any]:
        key = self.workflow_components(wf)
        responses = {
            "200": {
                "description": "Finished (sync), or the event stream (mode: stream)",
                "content": {
                    "application/json": {"schema": ref(f"{key}Result")},
                    "text/event-stream": {
                        "schema": SSE_EVENT,
                        "example": 'id: 1\nevent: start\ndata: {"workflow_id": "wf-..."}\n\n',
                    },
                },
            },
            "202": json_content(
                ref("ExecutionAccepted"), "Accepted (mode: async): poll or follow it"
            ),
            **error_responses(*EXECUTE_ERRORS),
        }
        return {
            "operationId": f"execute_{key}",
            "tags": ["workflows"],
            "summary": f"Run {wf.name}",
            "description": wf.description or f"Run the workflow {wf.name!r}.",
            "parameters": [
                header(
                    "X-Session-ID",
                    "Continue a session (same as body session_id)",
                    SESSION_ID_SCHEMA,
                ),
                header(
                    "Idempotency-Key",
                    "Replay the first response of a repeated request",
                    IDEMPOTENCY_KEY_SCHEMA,
                ),
            ],
            "requestBody": _request_body(wf, key),
            "responses": responses,
        }

    def execute_get(self, wf: CompiledWorkflow) -> dict[str, Any]:
        key = self.workflow_components(wf)
        return {
            "operationId": f"execute_{key}_get",
            "tags": ["workflows"],
            "summary": f"Run {wf.name} from a URL (browser EventSource)",
            "description": "Inputs as `inputs=<JSON object>` or one query parameter each.",
            "parameters": [
                query_param("mode", {"type": "string", "enum": ["sync", "stream", "async"]}),
                query_param("session_id", SESSION_ID_SCHEMA),
                query_param("inputs", {"type": "string"}, "The inputs as a JSON object"),
            ],
            "responses": {
                "200": {
                    "description": "Finished (sync), or the event stream (mode: stream)",
                    "content": {
                        "application/json": {"schema": ref(f"{key}Result")},
                        "text/event-stream": {"schema": SSE_EVENT},
                    },
                },
                "202": json_content(ref("ExecutionAccepted"), "Accepted (mode: async)"),
                **error_responses(*EXECUTE_ERRORS),
            },
        }

    # -- every route -------------------------------------------------------------------------
    def route(self, route: RouteInfo) -> None:
        if getattr(route.handler, "openapi_hidden", False):
            return
        if route.path == EXECUTE_PATH:
            for wf in self.nexus.workflows.values():
                path = f"/workflows/{path_segment(wf.name)}/execute"
                if route.method == "POST":
                    self.add("post", path, self.execute_post(wf))
                elif route.method == "GET":
                    self.add("get", path, self.execute_get(wf))
            return
        endpoint = getattr(route.handler, "nexus_endpoint", None)
        known = KNOWN_ROUTES.get((route.method, route.path))
        if endpoint is not None:
            operation = endpoint_operation(route, endpoint)
        elif known is not None:
            operation = known(self.nexus)
        else:
            operation = minimal_operation(route)
        self.add(route.method, route.path, operation)

    def build(self, routes: Iterable[RouteInfo]) -> dict[str, Any]:
        for route in routes:
            if route.method not in SKIPPED_METHODS:
                self.route(route)
        for path in sorted(self.paths):
            self.spec.path(path=path, operations=self.paths[path])
        self.nexus.hooks.openapi_spec(self.spec)
        document_statuses(self.nexus, self.spec)
        unique_operation_ids(self.spec)
        return self.spec.to_dict()


_RESERVED = object()  # equal to no schema: hoisting never reuses a reserved name


def _component_name(name: str) -> str:
    """A workflow name as a component-name stem (components allow ``[A-Za-z0-9._-]``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_-]", cleaned)) or "W"


def workflow_keys(names: Iterable[str]) -> dict[str, str]:
    """A component-name stem per workflow name, distinct even ignoring case (generated clients
    write one file per model): ``my-workflow`` and ``my_workflow`` both read ``MyWorkflow``, so
    the second in name order becomes ``MyWorkflow_2``. The stem also makes the operationIds
    (``execute_<stem>``), so they are distinct too."""
    keys: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(names):
        stem = _component_name(name)
        key, n = stem, 1
        while key.lower() in used:
            n += 1
            key = f"{stem}_{n}"
        used.add(key.lower())
        keys[name] = key
    return keys


def _upload_schema(wf: CompiledWorkflow, request: dict[str, Any]) -> dict[str, Any]:
    """The ``multipart/form-data`` body of a workflow with file inputs: a binary part per file
    input (several for ``list[File]``), the other inputs as one JSON ``inputs`` part."""
    binary = {"type": "string", "format": "binary"}
    properties: dict[str, Any] = {}
    for name, kind in wf.schema.file_inputs.items():
        fld = wf.schema.fields[name]
        prop: dict[str, Any] = (
            {"type": "array", "items": binary} if kind == "list" else dict(binary)
        )
        if fld.description:
            prop["description"] = fld.description
        properties[name] = prop
    properties.update(request["properties"])
    required = [n for n in wf.schema.file_inputs if wf.schema.fields[n].required]
    required += request.get("required", [])
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False  # an unknown part is a 400
    return schema


def _request_body(wf: CompiledWorkflow, key: str) -> dict[str, Any]:
    """JSON for workflows without file inputs; multipart (JSON too when every file input is
    optional) for those with."""
    json_body = {"schema": ref(f"{key}ExecuteRequest")}
    files = wf.schema.file_inputs
    if not files:
        return {"required": False, "content": {"application/json": json_body}}
    upload = {
        "schema": ref(f"{key}Upload"),
        "encoding": {
            "inputs": {"contentType": "application/json"},
            "context": {"contentType": "application/json"},
        },
    }
    content: dict[str, Any] = {"multipart/form-data": upload}
    if not any(wf.schema.fields[name].required for name in files):
        content["application/json"] = json_body
    return {"required": True, "content": content}


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
