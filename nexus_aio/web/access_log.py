"""The one access-log line per request: request id, method, path, workflow, status and duration;
never headers, inputs or secrets. Control characters in the method, path and workflow name are
escaped (``\\r\\n`` in a path cannot forge a line); the request id is printable ASCII already.
Written to the ``nexus_aio.access`` logger (text or JSON as
``configure_logging`` set it up)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from nexus_aio.logs import ACCESS_LOGGER, escape_controls, line_writer_for
from nexus_aio.web.keys import REQUEST_ID, TRACE, WORKFLOW_NAME

if TYPE_CHECKING:
    from nexus_aio.settings import Settings

ACCESS = logging.getLogger(ACCESS_LOGGER)


def access_logger(
    settings: Settings,
) -> Callable[[web.Request, web.StreamResponse, float], None] | None:
    """The access-log writer, or None when it would print nothing (checked once, at build).

    When the CLI's handler is where the line goes, the line is handed to it ready-made
    (``line_writer_for``); otherwise it goes through ``logging`` (an embedding app's own setup)."""
    if not settings.access_log or not ACCESS.isEnabledFor(logging.INFO):
        return None
    log = ACCESS._log  # skip the per-call isEnabledFor: decided above
    fast = line_writer_for(ACCESS)
    escape = escape_controls
    info = logging.INFO

    def write(request: web.Request, response: web.StreamResponse, duration: float) -> None:
        workflow = request.get(WORKFLOW_NAME, "-")
        rid = request.get(REQUEST_ID, "-")
        trace = request.get(TRACE)
        trace_id = trace.trace_id if trace is not None else "-"
        ms = duration * 1000
        path = request.path
        if fast is not None:
            method = request.method
            status = response.status
            fast(
                f"{rid} {escape(method)} {escape(path)} {escape(workflow)} {status} {ms:.2f}ms"
                f" trace={trace_id}",
                trace_id,
                {
                    "request_id": rid,
                    "trace_id": trace_id,
                    "method": method,
                    "path": path,
                    "workflow": workflow,
                    "status": status,
                    "duration_ms": round(ms, 3),
                },
            )
            return
        log(
            info,
            "%s %s %s %s %d %.2fms trace=%s",
            (
                rid,
                escape(request.method),
                escape(path),
                escape(workflow),
                response.status,
                ms,
                trace_id,
            ),
            extra={
                "fields": {
                    "request_id": rid,
                    "trace_id": trace_id,
                    "method": request.method,
                    "path": path,
                    "workflow": workflow,
                    "status": response.status,
                    "duration_ms": round(ms, 3),
                }
            },
        )

    return write
