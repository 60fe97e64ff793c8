"""Retries: whether a failed attempt runs again, after how long, and the ``retry`` event it logs.

The runtime asks :func:`retry_delay` after every failed attempt of a workflow that has a
``RetryPolicy``. Sync and stream runs wait in place (inside their request timeout); async runs
give their running slot back and wait in the executor's queue (:class:`RetryLater`), so a backoff
never holds a slot. Cancellations, timeouts, interruptions and client errors (4xx, such as a
``ValidationError`` or a session of another actor) end the run at once: running again could not
change them.
"""

from __future__ import annotations

from typing import Any

from nexus_aio.errors import Cancelled, Interrupted, NexusError, Timeout, WorkflowExecutionError
from nexus_aio.stores.executions import ExecutionRecord
from nexus_aio.workflows.retry import RetryPolicy

__all__ = ["RetryLater", "retry_data", "retry_delay"]

_FINAL = (Timeout, Cancelled, Interrupted)


class RetryLater(Exception):
    """Raised by an async run's failed attempt: park it, then run it again after ``delay``."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


def raised(error: NexusError) -> BaseException:
    """The exception the workflow raised: ``error`` itself, or the one the runtime wrapped."""
    cause = error.__cause__
    if cause is None or not isinstance(error, WorkflowExecutionError):
        return error
    return getattr(cause, "original", cause)  # WorkflowAborted carries SystemExit and the like


def retry_delay(policy: RetryPolicy, error: NexusError, attempt: int) -> float | None:
    """Seconds before attempt ``attempt + 1``, or None when ``error`` ends the run."""
    if attempt >= policy.max_attempts or isinstance(error, _FINAL) or error.status < 500:
        return None
    if not isinstance(raised(error), policy.retry_on):
        return None
    return policy.delay(attempt)


def retry_data(
    record: ExecutionRecord, policy: RetryPolicy | None, error: NexusError, delay: float
) -> dict[str, Any]:
    """The ``retry`` event: which attempt failed, with what error, and the wait before the next.

    ``error`` has the shape of a record's ``error`` (``type``, ``message``, ``details``; a plain
    exception shows as ``WorkflowExecutionError`` with ``details.exception`` naming its class).
    """
    return {
        "workflow_id": record.id,
        "attempt": record.attempts,
        "max_attempts": None if policy is None else policy.max_attempts,
        "error": error.to_dict(),
        "delay": round(delay, 3),
    }
