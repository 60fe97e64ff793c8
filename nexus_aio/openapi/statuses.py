"""The error statuses every operation can answer whatever its handler does, derived once when the
document is built from the app's settings, workflows and routes (nothing per request).

What the server answers on any operation (each added where missing, never replacing a response
an operation documents itself):

* 500 everywhere (an internal error);
* 400 where the operation takes parameters or a body, 404 where its path has parameters;
* on ``POST``/``PUT``/``PATCH``: 400, 408 (the body did not arrive within ``body_timeout``),
  413 (larger than ``max_request_size``) and 415 (a body type the route does not read);
* 403 on a state-changing operation (any method but ``GET``/``HEAD``/``OPTIONS``, and the ``GET``
  form of execute): the cross-origin protection refuses what a browser marks cross-site;
* 429 (with ``Retry-After``) where a rate limit applies: a workflow's own ``rate_limit``, the
  global ``rate_limit`` (every route but ``/health*``, ``/docs*``, ``/metrics`` and
  ``/openapi.json``), custom endpoints (``endpoint_rate_limit`` by default).

The auth plugin adds 401/403 itself (``add_responses`` in its ``openapi_spec`` hook).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nexus_aio.openapi.components import error_response, operations
from nexus_aio.openapi.routes import path_segment

if TYPE_CHECKING:
    from apispec import APISpec

    from nexus_aio.nexus import Nexus

__all__ = ["document_statuses", "unique_operation_ids"]

BODY_METHODS = frozenset({"post", "put", "patch"})
SAFE_METHODS = frozenset({"get", "head", "options", "trace"})
BODY_STATUSES = (400, 408, 413, 415)
# The routes the rate limiter never counts (the same rule as nexus_aio/web/ratelimit.py).
RATE_LIMIT_EXEMPT_PREFIXES = ("/health", "/docs")
RATE_LIMIT_EXEMPT_PATHS = frozenset({"/metrics", "/openapi.json"})
_EXECUTE = re.compile(r"^/workflows/([^/]+)/execute$")


def document_statuses(nexus: Nexus, spec: APISpec) -> None:
    """Add to every operation of ``spec`` the error responses the server can answer on it."""
    settings = nexus.settings
    prefix = settings.api_prefix
    global_limit = bool(settings.rate_limit)
    limited_workflows = {
        path_segment(name) for name, wf in nexus.workflows.items() if wf.rate_limit
    }
    for path, method, operation in operations(spec):
        local = path[len(prefix) :] or "/" if prefix and path.startswith(prefix) else path
        execute = _EXECUTE.match(local)
        statuses = {500}
        if operation.get("parameters") or "requestBody" in operation:
            statuses.add(400)
        if "{" in local:
            statuses.add(404)
        if method in BODY_METHODS:
            statuses.update(BODY_STATUSES)
        if method not in SAFE_METHODS or execute is not None:
            statuses.add(403)
        if _rate_limited(local, operation, execute, global_limit, limited_workflows):
            statuses.add(429)
        responses = operation.setdefault("responses", {})
        for status in statuses:
            responses.setdefault(str(status), error_response(status))
        ordered = sorted(responses.items(), key=lambda item: (not item[0].isdigit(), item[0]))
        responses.clear()
        responses.update(ordered)


def _rate_limited(
    path: str,
    operation: dict[str, Any],
    execute: re.Match[str] | None,
    global_limit: bool,
    limited_workflows: set[str],
) -> bool:
    if path.startswith(RATE_LIMIT_EXEMPT_PREFIXES) or path in RATE_LIMIT_EXEMPT_PATHS:
        return False
    if execute is not None:
        return global_limit or execute.group(1) in limited_workflows
    return global_limit or "endpoints" in operation.get("tags", ())


def unique_operation_ids(spec: APISpec) -> None:
    """Make operationIds distinct even ignoring case (code generators lower-case them): a later
    duplicate gets ``_2``, ``_3``... Workflow ids are distinct already; this guards plugins'."""
    used: set[str] = set()
    for _path, _method, operation in operations(spec):
        op_id = operation.get("operationId")
        if not isinstance(op_id, str):
            continue
        candidate, n = op_id, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{op_id}_{n}"
        used.add(candidate.lower())
        operation["operationId"] = candidate
