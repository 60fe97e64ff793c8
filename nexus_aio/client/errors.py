"""The error a response stands for: the server's own ``NexusError`` subclass, chosen by the
envelope's ``type`` (else by the HTTP status), with its message, details and request id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_aio import errors
from nexus_aio.errors import NexusError, Timeout

__all__ = ["ERRORS_BY_STATUS", "ERRORS_BY_TYPE", "error_from_response", "wait_timeout"]


def _error_classes() -> dict[str, type[NexusError]]:
    found: dict[str, type[NexusError]] = {}
    pending: list[type[NexusError]] = [NexusError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.type, cls)
        pending.extend(cls.__subclasses__())
    return found


ERRORS_BY_TYPE = _error_classes()
ERRORS_BY_STATUS: dict[int, type[NexusError]] = {
    **errors.ERRORS_BY_STATUS,
    500: errors.WorkflowExecutionError,
}


def error_from_response(
    status: int, body: Any, request_id: str | None = None, headers: Mapping[str, str] | None = None
) -> NexusError:
    """The ``NexusError`` an error response stands for (by envelope ``type``, else by status)."""
    info = body.get("error") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        info = {}
    kind = info.get("type")
    cls = ERRORS_BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        cls = ERRORS_BY_STATUS.get(status, NexusError)
    message = info.get("message") or f"HTTP {status}"
    err = cls(str(message), details=info.get("details"), headers=dict(headers or {}))
    err.status = status
    if isinstance(kind, str) and kind != cls.type:
        err.type = kind
    err.request_id = request_id
    return err


def wait_timeout(execution_id: str, record: Mapping[str, Any], timeout: float) -> Timeout:
    return Timeout(
        f"Execution {execution_id!r} did not finish within {timeout:g} s",
        details={"execution_id": execution_id, "status": record.get("status")},
    )
