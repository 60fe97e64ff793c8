"""Error types. Each carries its HTTP status and the envelope ``type``.

Handlers raise; one place (the error-rendering plugin) turns any of these into the
documented envelope, so no code path formats an error body by hand.
"""

from __future__ import annotations

from typing import Any


class NexusError(Exception):
    """Base of every error the API reports with the envelope."""

    status: int = 500
    type: str = "InternalError"
    request_id: str | None = None  # set by the client from the response's X-Request-ID
    at: float | None = None  # when it happened (epoch seconds), once an execution recorded it

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = {} if details is None else details
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "details": self.details}


class ValidationError(NexusError):
    """Bad input: missing, unknown or wrong-typed fields, malformed JSON."""

    status = 400
    type = "ValidationError"


class SecurityError(ValidationError):
    """Input refused by the security filter (dangerous keys, depth, key length)."""

    type = "SecurityError"


class BadRequest(NexusError):
    status = 400
    type = "BadRequest"


class Unauthorized(NexusError):
    status = 401
    type = "Unauthorized"

    def __init__(self, message: str = "Authentication required", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class Forbidden(NexusError):
    status = 403
    type = "Forbidden"


class NotFound(NexusError):
    status = 404
    type = "NotFound"


class WorkflowNotFound(NotFound):
    type = "WorkflowNotFound"


class ExecutionNotFound(NotFound):
    type = "ExecutionNotFound"


class SessionNotFound(NotFound):
    type = "SessionNotFound"


class ScheduleNotFound(NotFound):
    type = "ScheduleNotFound"


class MethodNotAllowed(NexusError):
    status = 405
    type = "MethodNotAllowed"


class Conflict(NexusError):
    status = 409
    type = "Conflict"


class RequestTimeout(NexusError):
    """The request body did not fully arrive within ``body_timeout``; the connection closes."""

    status = 408
    type = "RequestTimeout"


class PayloadTooLarge(NexusError):
    status = 413
    type = "PayloadTooLarge"


class UnsupportedMediaType(NexusError):
    status = 415
    type = "UnsupportedMediaType"


class IdempotencyConflict(NexusError):
    status = 422
    type = "IdempotencyConflict"


class ClientClosedRequest(NexusError):
    """The client went away before its request body arrived (nginx's 499): not a server error;
    nobody receives the answer, the status is for logs and metrics."""

    status = 499
    type = "ClientClosedRequest"


class RateLimitExceeded(NexusError):
    status = 429
    type = "RateLimitExceeded"


class WorkflowExecutionError(NexusError):
    """The workflow raised: message kept, traceback only in the server log."""

    status = 500
    type = "WorkflowExecutionError"


class ServiceUnavailable(NexusError):
    status = 503
    type = "ServiceUnavailable"


class StoreUnavailable(ServiceUnavailable):
    """A store (SQLite, Redis) cannot be read or written right now."""

    type = "StoreUnavailable"


class Timeout(NexusError):
    status = 504
    type = "Timeout"


class Cancelled(NexusError):
    """The execution was cancelled (``DELETE /executions/{id}``, a client leaving a stream)."""

    status = 409
    type = "Cancelled"

    def __init__(self, message: str = "The execution was cancelled", **kw: Any) -> None:
        super().__init__(message, **kw)


class Interrupted(NexusError):
    """The server stopped before the execution finished (found at the next start)."""

    status = 500
    type = "Interrupted"

    def __init__(
        self, message: str = "The server stopped before this execution finished", **kw: Any
    ) -> None:
        super().__init__(message, **kw)


class WorkerLost(NexusError):
    """Every queue worker that took the execution died before finishing it."""

    status = 500
    type = "WorkerLost"


# The error type for each HTTP status an error can carry (500 stays the generic NexusError:
# an unexpected server error is not a workflow's failure).
ERRORS_BY_STATUS: dict[int, type[NexusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: IdempotencyConflict,
    429: RateLimitExceeded,
    503: ServiceUnavailable,
    504: Timeout,
}


class RegistrationError(Exception):
    """A workflow, endpoint or plugin cannot be registered (raised at startup, not over HTTP)."""


class ConfigurationError(Exception):
    """Settings that cannot work together (raised at startup)."""
