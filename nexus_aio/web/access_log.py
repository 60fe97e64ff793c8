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
from nexus_aio.web.keys import WORKFLOW_NAME

if TYPE_CHECKING:
    from nexus_aio.settings import Settings
    from nexus_aio.tracing import TraceContext

ACCESS = logging.getLogger(ACCESS_LOGGER)


def access_logger(
    settings: Settings,
) -> Callable[[web.Request, web.StreamResponse, float, str, TraceContext], None] | None:
    """The access-log writer, or None when it would print nothing (checked once, at build).

    When the CLI's handler is where the line goes, the line is handed to it ready-made
    (``line_writer_for``); otherwise it goes through ``logging`` (an embedding app's own setup).
    The core middleware hands it the request id and trace it holds (no request lookups)."""
    if not settings.access_log or not ACCESS.isEnabledFor(logging.INFO):
        return None
    log = ACCESS._log  # skip the per-call isEnabledFor: decided above
    fast = line_writer_for(ACCESS)
    escape = escape_controls
    info = logging.INFO

    def write(
        request: web.Request,
        response: web.StreamResponse,
        duration: float,
        rid: str,
        trace: TraceContext,
    ) -> None:
        workflow = request.get(WORKFLOW_NAME, "-")
        trace_id = trace.trace_id
        ms = duration * 1000
        method = request.method
        path = request.path
        status = response.status
        if f"{method}{path}{workflow}".isprintable():  # one check instead of three
            shown = f"{method} {path} {workflow}"
        else:
            shown = f"{escape(method)} {escape(path)} {escape(workflow)}"
        fields = {
            "request_id": rid,
            "trace_id": trace_id,
            "method": method,
            "path": path,
            "workflow": workflow,
            "status": status,
            "duration_ms": round(ms, 3),
        }
        if fast is not None:
            fast(f"{rid} {shown} {status} {ms:.2f}ms trace={trace_id}", trace_id, fields)
            return
        log(
            info,
            "%s %s %d %.2fms trace=%s",
            (rid, shown, status, ms, trace_id),
            extra={"fields": fields},
        )

    return write
