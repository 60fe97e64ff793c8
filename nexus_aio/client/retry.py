"""When and how long the clients wait before sending a request again."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "parse_retry_after", "retryable"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits up to ``base * 2**n`` seconds
    (capped at ``max_delay``), and never less than the server's ``Retry-After``."""

    max_retries: int = 3
    base: float = 0.25
    max_delay: float = 30.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(
        self,
        attempt: int,
        retry_after: str | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        backoff = min(self.max_delay, self.base * (2**attempt)) * rand()
        hinted = parse_retry_after(retry_after)
        return min(self.max_delay, max(backoff, hinted))


def parse_retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 0.0


def retryable(method: str, headers: Mapping[str, str]) -> bool:
    return method in IDEMPOTENT_METHODS or "Idempotency-Key" in headers
