"""Idempotency keys: the same key and the same request within ``idempotency_ttl`` get the
original outcome instead of a second run.

Channel-neutral: a channel computes the caller-scoped key and the request's fingerprint, runs
its request through :meth:`Idempotency.once`, and renders a replayed entry its own way (HTTP
answers with the stored body; a stream replays the stored events). Concurrent duplicates in this
process queue on a per-key lock, so only the first runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from nexus_aio.envelope import error_envelope
from nexus_aio.errors import IdempotencyConflict, NexusError
from nexus_aio.stores.executions import ExecutionStore, IdempotencyEntry

__all__ = ["Idempotency", "Outcome", "worth_remembering"]

log = logging.getLogger("nexus_aio.idempotency")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a request answered: status, body (empty for a stream) and its execution id."""

    status: int
    body: bytes
    execution_id: str | None


def worth_remembering(status: int) -> bool:
    """Outcomes of an execution that ran (success, 202, workflow failure, timeout). Refusals
    (4xx) and overload (429/503) are not: retrying them with the same key may well succeed."""
    return status < 400 or (status >= 500 and status != 503)


class Idempotency:
    def __init__(self, store: ExecutionStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._locks: dict[str, list[Any]] = {}  # key -> [asyncio.Lock, holders]

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = [asyncio.Lock(), 0]
        held[1] += 1
        try:
            async with held[0]:
                yield
        finally:
            held[1] -= 1
            if not held[1]:
                del self._locks[key]

    async def once(
        self,
        key: str,
        fingerprint: str,
        shown_key: str,
        attempt: Callable[[], Awaitable[tuple[Outcome, Any]]],
        execution_id: Callable[[], str | None],
    ) -> tuple[IdempotencyEntry | None, Any]:
        """``(entry, None)`` when ``key`` was used for this request before (replay it), else
        ``(None, answer)`` after running ``attempt`` (which returns its outcome and the channel's
        answer). A key used for another request raises ``IdempotencyConflict``. When
        ``attempt`` raises a ``NexusError`` after its execution ran, the error's envelope is
        remembered under ``execution_id()``."""
        async with self._lock(key):
            entry = await self._store.get_idempotency(key)
            if entry is not None:
                if entry.request_hash != fingerprint:
                    raise IdempotencyConflict(
                        f"Idempotency-Key {shown_key!r} was already used for a different request",
                        details={"idempotency_key": shown_key, "workflow_id": entry.execution_id},
                    )
                return entry, None
            try:
                outcome, answer = await attempt()
            except NexusError as exc:
                ran = execution_id()
                if ran and worth_remembering(exc.status):
                    body = orjson.dumps(error_envelope(exc, ran))
                    await self._remember(key, fingerprint, Outcome(exc.status, body, ran))
                raise
            if outcome.execution_id and worth_remembering(outcome.status):
                await self._remember(key, fingerprint, outcome)
            return None, answer

    async def _remember(self, key: str, fingerprint: str, outcome: Outcome) -> None:
        assert outcome.execution_id is not None
        entry = IdempotencyEntry(
            key,
            fingerprint,
            outcome.execution_id,
            outcome.status,
            outcome.body,
            time.time() + self._ttl,
        )
        try:
            await self._store.put_idempotency(entry)
        except NexusError as exc:  # the execution ran; its client still gets its answer
            log.warning(
                "could not store idempotency key for %s: %s", outcome.execution_id, exc.message
            )
