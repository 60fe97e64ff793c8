"""Python clients for a nexus_aio server: :class:`NexusClient` (sync, requests) and
:class:`AsyncNexusClient` (aiohttp).

Both speak the same API and share the decisions that matter:

* ``execute`` returns the workflow's **result** and raises on failure; ``execute_workflow`` and
  ``execute_many`` return success **envelopes** (as the spec's example clients do), so code
  written against those examples runs unchanged.
* Errors raise the server's own ``NexusError`` subclasses (``ValidationError``,
  ``WorkflowNotFound``, ``RateLimitExceeded``...), chosen by the envelope's ``type``, carrying
  ``type``, ``status``, ``message``, ``details`` and ``request_id``.
* Retries: 429, 503 and connection errors are retried with exponential backoff and full jitter,
  waiting at least what ``Retry-After`` asks. A request is retried only if repeating it is
  harmless: GET/DELETE, or a POST carrying an ``Idempotency-Key``. The clients put a fresh key on
  every execute POST (kept across its retries), so the server replays instead of re-running.
  ``batch`` gets no key by default (the batch route does not de-duplicate), so it is not retried.
* ``rate_limit`` holds the ``X-RateLimit-*`` headers of the latest response.
"""

from nexus_aio.client.async_client import AsyncNexusClient
from nexus_aio.client.base import Event, RateLimit
from nexus_aio.client.errors import error_from_response
from nexus_aio.client.retry import RetryPolicy
from nexus_aio.client.sync_client import NexusClient
from nexus_aio.errors import (
    BadRequest,
    Conflict,
    ExecutionNotFound,
    Forbidden,
    IdempotencyConflict,
    MethodNotAllowed,
    NexusError,
    NotFound,
    PayloadTooLarge,
    RateLimitExceeded,
    SecurityError,
    ServiceUnavailable,
    SessionNotFound,
    StoreUnavailable,
    Timeout,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
    WorkflowExecutionError,
    WorkflowNotFound,
)

__all__ = [
    "AsyncNexusClient",
    "BadRequest",
    "Conflict",
    "Event",
    "ExecutionNotFound",
    "Forbidden",
    "IdempotencyConflict",
    "MethodNotAllowed",
    "NexusClient",
    "NexusError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimit",
    "RateLimitExceeded",
    "RetryPolicy",
    "SecurityError",
    "ServiceUnavailable",
    "SessionNotFound",
    "StoreUnavailable",
    "Timeout",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationError",
    "WorkflowExecutionError",
    "WorkflowNotFound",
    "error_from_response",
]
