"""Rate limiting: a token bucket computed exactly with GCRA, and the backend interface.

A limit is "``limit`` requests per minute" with an optional ``burst`` (the bucket's capacity,
``limit`` when not given). Tokens refill continuously at ``limit / 60`` per second; there are no
fixed windows, so a client cannot double its rate by straddling a window edge.

GCRA (the generic cell rate algorithm) stores one float per key: the *theoretical arrival time*
(TAT), the moment the bucket is full again. Every count the API reports derives from it:

* emission interval ``T = 60 / limit`` (seconds per token), capacity span ``C * T``;
* a request at ``now`` is allowed when ``max(TAT, now) + T - now <= C * T``, and moves TAT there;
* whole tokens left = ``floor((C * T - (TAT - now)) / T)``; the bucket is full again at ``TAT``;
* a refused request must wait until ``TAT + T - C * T`` for one token.

A key whose TAT has passed is a full bucket, indistinguishable from an unknown key, so it can be
forgotten at no cost: that is how memory stays bounded (see :class:`MemoryRateLimiter`).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MemoryRateLimiter", "RateLimitBackend", "RateLimitDecision"]

# Seconds of float noise tolerated at boundaries: TAT is a sum of emission intervals, so a bucket
# emptied exactly on time may be off by a few ulps. A microsecond is far below any refill step.
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The verdict for one request and the numbers behind its ``X-RateLimit-*`` headers."""

    allowed: bool
    limit: int  # requests per minute, as configured
    remaining: int  # whole tokens left after this request
    reset: int  # epoch seconds (rounded up) when the bucket is full again
    retry_after: int  # seconds (rounded up, >= 1) until one token is available; 0 when allowed

    def headers(self) -> dict[str, str]:
        """Response headers; ``Retry-After`` only on a refusal."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimitBackend(ABC):
    """Counts requests per key. Keys already name their limit (``"wf:sum|client:1.2.3.4"``), so
    the same key is always hit with the same ``limit`` and ``burst``."""

    @abstractmethod
    async def hit(self, key: str, limit: int, burst: int | None = None) -> RateLimitDecision:
        """Take one token from ``key``'s bucket, or refuse when none is left."""

    async def refund(self, key: str, limit: int, burst: int | None = None) -> None:
        """Give back the token the last allowed ``hit`` took, best effort.

        The web layer calls it when a request that was counted is then refused by auth, so
        refused requests do not spend the client's budget. The default does nothing (a backend
        that cannot refund over-counts a little; it never under-counts).
        """
        return None

    async def close(self) -> None:
        """Release connections; called once at shutdown."""
        return None

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the backend cannot answer right now."""
        return None


def _decision_factory() -> Callable[[bool, int, int, int, int], RateLimitDecision]:
    """A constructor for the frozen decision at about half the cost of its ``__init__``.

    A frozen dataclass's ``__init__`` routes every field through ``object.__setattr__``; writing
    the slots through their descriptors does the same work with less dispatch. It matters because
    one decision is built per request.
    """
    new = object.__new__
    slots = RateLimitDecision.__dict__
    set_allowed = slots["allowed"].__set__
    set_limit = slots["limit"].__set__
    set_remaining = slots["remaining"].__set__
    set_reset = slots["reset"].__set__
    set_retry_after = slots["retry_after"].__set__

    def decision(
        allowed: bool, limit: int, remaining: int, reset: int, retry_after: int
    ) -> RateLimitDecision:
        made = new(RateLimitDecision)
        set_allowed(made, allowed)
        set_limit(made, limit)
        set_remaining(made, remaining)
        set_reset(made, reset)
        set_retry_after(made, retry_after)
        return made

    return decision


_decision = _decision_factory()


def _check_limits(limit: int, burst: int | None) -> None:
    if limit < 1:
        raise ValueError(f"rate limit must be at least 1 request per minute, got {limit!r}")
    if burst is not None and burst < 1:
        raise ValueError(f"rate limit burst must be at least 1, got {burst!r}")


class MemoryRateLimiter(RateLimitBackend):
    """GCRA buckets in a dict of key -> TAT, for a single process.

    TATs are kept relative to the clock reading at construction, so the float sums keep sub-
    nanosecond precision instead of the ~0.2 µs an epoch-sized float allows.

    Memory stays bounded in two ways:

    * Idle keys (TAT passed: the bucket is full again) carry no information. After every
      ``sweep_every`` new keys, a sweep step checks ``2 * sweep_every`` keys from a snapshot of
      the dict and drops the idle ones. Checking keys twice as fast as they arrive bounds the dict
      near twice the number of busy keys, and no step costs more than a few milliseconds.
    * If more than ``max_keys`` keys are busy at once (say, a flood of spoofed clients), the 10%
      with the oldest TAT are dropped. Those buckets are the closest to full, so forgetting them
      grants the least unearned capacity, but it does grant some: a dropped client gets a full
      bucket back. The alternative, refusing new keys, would lock out honest clients instead.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_keys: int = 1_000_000,
        sweep_every: int = 10_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        if sweep_every < 1:
            raise ValueError("sweep_every must be at least 1")
        self._clock = clock
        self._base = clock()
        self._max_keys = max_keys
        self._sweep_every = sweep_every
        self._tat: dict[str, float] = {}
        self._new_keys = 0  # since the last sweep step
        self._sweep_keys: list[str] = []
        self._sweep_pos = 0

    def __len__(self) -> int:
        return len(self._tat)

    async def hit(self, key: str, limit: int, burst: int | None = None) -> RateLimitDecision:
        return self.hit_nowait(key, limit, burst)

    async def refund(self, key: str, limit: int, burst: int | None = None) -> None:
        self.refund_nowait(key, limit, burst)

    async def close(self) -> None:
        self._tat.clear()
        self._sweep_keys = []

    def refund_nowait(self, key: str, limit: int, burst: int | None = None) -> None:
        """Synchronous :meth:`refund`: move the key's TAT back by one emission interval.

        GCRA makes this exact: an allowed hit moved TAT from ``max(TAT, now)`` by one interval,
        so stepping back restores the bucket (a TAT that lands in the past is a full bucket).
        """
        tat = self._tat.get(key)
        if tat is not None:
            self._tat[key] = tat - 60.0 / limit

    def hit_nowait(self, key: str, limit: int, burst: int | None = None) -> RateLimitDecision:
        """Synchronous :meth:`hit`, the core's fast path: no await, so no task switch."""
        if limit < 1 or (burst is not None and burst < 1):
            _check_limits(limit, burst)
        now = self._clock() - self._base
        interval = 60.0 / limit
        span = 60.0 if burst is None else burst * interval
        tats = self._tat
        tat = tats.get(key)
        if tat is None:
            self._admit_new_key(now)
            tat = now
        elif tat < now:
            tat = now
        new_tat = tat + interval
        if new_tat - now <= span + _EPS:
            tats[key] = new_tat
            return _decision(
                True,
                limit,
                int((span - new_tat + now + _EPS) / interval),
                math.ceil(new_tat + self._base - _EPS),
                0,
            )
        return _decision(
            False,
            limit,
            0,
            math.ceil(tat + self._base - _EPS),
            max(1, math.ceil(new_tat - span - now - _EPS)),
        )

    # -- bounded memory ----------------------------------------------------------------------
    def _admit_new_key(self, now: float) -> None:
        """Bookkeeping for a key about to be inserted: sweep when due, evict when full."""
        self._new_keys += 1
        if self._new_keys >= self._sweep_every:
            self._new_keys = 0
            self._sweep_step(now)
        if len(self._tat) >= self._max_keys:
            self._evict_oldest()

    def _sweep_step(self, now: float) -> None:
        """Drop idle keys among the next ``2 * sweep_every`` of the current snapshot.

        The snapshot is a plain list of keys (copied at C speed when the previous one is used up),
        so the dict itself can change freely between steps.
        """
        keys = self._sweep_keys
        if self._sweep_pos >= len(keys):
            keys = self._sweep_keys = list(self._tat)
            self._sweep_pos = 0
        start = self._sweep_pos
        stop = self._sweep_pos = start + 2 * self._sweep_every
        tats = self._tat
        get = tats.get
        for key in keys[start:stop]:
            tat = get(key)
            if tat is not None and tat <= now:
                del tats[key]
        if self._sweep_pos >= len(keys):
            self._sweep_keys = []
            self._sweep_pos = 0

    def _evict_oldest(self) -> None:
        """Cut the dict to 90% of ``max_keys`` by dropping the smallest TATs (closest to full)."""
        tats = self._tat
        keep = self._max_keys - max(1, self._max_keys // 10)
        drop = len(tats) - keep
        if drop <= 0:
            return
        threshold = sorted(tats.values())[drop - 1]
        dropped = 0
        for key, tat in list(tats.items()):
            if tat <= threshold:
                del tats[key]
                dropped += 1
                if dropped >= drop:
                    break
