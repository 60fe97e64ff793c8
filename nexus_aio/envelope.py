"""Success and error envelopes, exactly as the spec writes them, and the ids they carry."""

from __future__ import annotations

import os
import time
from typing import Any

from .errors import NexusError

_last_second = -1
_last_prefix = ""


def iso_timestamp(t: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, ending in ``Z``; the second-level prefix is cached."""
    global _last_second, _last_prefix
    if t is None:
        t = time.time()
    second = int(t)
    if second != _last_second:
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second
    return f"{_last_prefix}.{int((t - second) * 1000):03d}Z"


def iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso_timestamp(t)


def new_execution_id() -> str:
    """``wf-`` + 24 hex characters (96 random bits): unique, URL-safe, cheap."""
    return "wf-" + os.urandom(12).hex()


def new_request_id() -> str:
    return "req-" + os.urandom(8).hex()


def success_envelope(result: Any, workflow_id: str, execution_time: float) -> dict[str, Any]:
    return {
        "success": True,
        "result": result,
        "workflow_id": workflow_id,
        "execution_time": execution_time,
        "timestamp": iso_timestamp(),
    }


def error_envelope(error: NexusError, workflow_id: str | None = None) -> dict[str, Any]:
    return {
        "success": False,
        "error": error.to_dict(),
        "workflow_id": workflow_id,
        "timestamp": iso_timestamp(),
    }
