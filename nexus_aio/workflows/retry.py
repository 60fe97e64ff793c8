"""``RetryPolicy``: how often, and how long apart, a failing workflow is run again.

A policy is declared with the workflow (``@app.workflow(retry=RetryPolicy(...))``) and checked
when it is made, so a bad argument stops the app at registration, not at the first failure. The
execution layer applies it (``nexus_aio.execution.retry``) the same way for every mode.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from nexus_aio.errors import RegistrationError

__all__ = ["MAX_ATTEMPTS_LIMIT", "InvalidRetryPolicy", "RetryPolicy"]

MAX_ATTEMPTS_LIMIT = 100


class InvalidRetryPolicy(RegistrationError, ValueError):
    """A ``RetryPolicy`` argument of the wrong type or out of range."""


def _number(name: str, value: Any, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRetryPolicy(f"RetryPolicy: {name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < low:
        raise InvalidRetryPolicy(f"RetryPolicy: {name} must be a finite number >= {low:g}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Run a failed workflow again, up to ``max_attempts`` runs in all.

    After failed attempt ``n`` (1-based) the next one starts after
    ``min(max_delay, initial_delay * backoff ** (n - 1))`` seconds; with ``jitter`` that delay is
    scaled by a random factor in [0.5, 1] so that runs failing together do not retry together.
    Only errors that are instances of ``retry_on`` (matched against the exception the workflow
    raised) are retried; cancellations, timeouts and client errors (4xx) never are.
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise InvalidRetryPolicy(
                f"RetryPolicy: max_attempts must be an integer, got {attempts!r}"
            )
        if not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
            raise InvalidRetryPolicy(
                f"RetryPolicy: max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT},"
                f" got {attempts}"
            )
        initial = _number("initial_delay", self.initial_delay, 0)
        backoff = _number("backoff", self.backoff, 1)
        longest = _number("max_delay", self.max_delay, 0)
        if longest < initial:
            raise InvalidRetryPolicy(
                f"RetryPolicy: max_delay ({longest:g}) must be at least initial_delay ({initial:g})"
            )
        if not isinstance(self.jitter, bool):
            raise InvalidRetryPolicy(
                f"RetryPolicy: jitter must be True or False, got {self.jitter!r}"
            )
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, tuple | list) or not all(
            isinstance(t, type) and issubclass(t, Exception) for t in retry_on
        ):
            raise InvalidRetryPolicy(
                "RetryPolicy: retry_on must be an exception class or a tuple of them"
                f" (subclasses of Exception), got {self.retry_on!r}"
            )
        object.__setattr__(self, "initial_delay", initial)
        object.__setattr__(self, "backoff", backoff)
        object.__setattr__(self, "max_delay", longest)
        object.__setattr__(self, "retry_on", tuple(retry_on))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        try:
            seconds = self.initial_delay * self.backoff ** (attempt - 1)
        except OverflowError:
            seconds = math.inf
        seconds = min(self.max_delay, seconds)
        if self.jitter:
            seconds *= random.uniform(0.5, 1.0)  # spreads retries; not a secret
        return seconds
