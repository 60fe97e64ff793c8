"""Logging: text or JSON lines, and the one access-log line per request.

The access line carries the request id, method, path, workflow, status and duration; never
headers, inputs or secrets.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from aiohttp import web

    from nexus_aio.settings import Settings

ACCESS = logging.getLogger("nexus_aio.access")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the CLI (libraries embedding us keep their own)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def access_logger(
    settings: Settings,
) -> Callable[[web.Request, web.StreamResponse, float], None] | None:
    """The access-log writer, or None when it would print nothing (checked once, at build)."""
    if not settings.access_log or not ACCESS.isEnabledFor(logging.INFO):
        return None
    from nexus_aio.web.keys import REQUEST_ID, WORKFLOW_NAME

    log = ACCESS._log  # skip the per-call isEnabledFor: decided above
    info = logging.INFO

    def write(request: web.Request, response: web.StreamResponse, duration: float) -> None:
        workflow = request.get(WORKFLOW_NAME, "-")
        rid = request.get(REQUEST_ID, "-")
        ms = duration * 1000
        log(
            info,
            "%s %s %s %s %d %.2fms",
            (rid, request.method, request.path, workflow, response.status, ms),
            extra={
                "fields": {
                    "request_id": rid,
                    "method": request.method,
                    "path": request.path,
                    "workflow": workflow,
                    "status": response.status,
                    "duration_ms": round(ms, 3),
                }
            },
        )

    return write
