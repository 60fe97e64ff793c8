"""Idempotency keys: the same key and the same request within ``idempotency_ttl`` get the
original outcome instead of a second run.

Channel-neutral: a channel computes the caller-scoped key and the request's fingerprint and
:meth:`Idempotency.claim` s the key before running. The claim is an entry in the executions store
(status :data:`IN_FLIGHT`, naming the execution id the request will have), written only when no
entry holds the key, so exactly one request runs per key even across processes sharing the
store (``serve --workers N``). The owner then :meth:`~Idempotency.settle` s the claim with the
outcome to remember, or :meth:`~Idempotency.release` s it when there is nothing to remember (a
refusal, a stream cancelled because its client went away), which frees the key for a retry.

A repeat that finds the claim in flight :meth:`~Idempotency.wait` s for it: in this process on
an event the owner sets, from another process by polling the store. The channel renders a settled
entry its own way (HTTP answers with the stored body; a stream replays the stored events) and may
follow an in-flight execution directly (a stream repeat follows it from its first event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from nexus_aio.envelope import error_envelope, new_execution_id
from nexus_aio.errors import IdempotencyConflict, NexusError
from nexus_aio.stores.executions import ExecutionStore, IdempotencyEntry

__all__ = ["IN_FLIGHT", "Claim", "Idempotency", "Outcome", "worth_remembering"]

log = logging.getLogger("nexus_aio.idempotency")

IN_FLIGHT = 0
"""The ``status`` of an entry whose request is still running (a claim)."""

#: Longest pause between two looks at the store while waiting for a claim of another process.
WAIT_POLL = 0.1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a request answered: status, body (empty for a stream) and its execution id."""

    status: int
    body: bytes
    execution_id: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`Idempotency.claim` found: ``owned`` (run the request, then settle or release
    the key), else the ``entry`` holding the key (settled, or in flight: ``entry.status ==
    IN_FLIGHT``)."""

    owned: bool
    entry: IdempotencyEntry


def worth_remembering(status: int) -> bool:
    """Outcomes of an execution that ran (success, 202, workflow failure, timeout). Refusals
    (4xx) and overload (429/503) are not: retrying them with the same key may well succeed."""
    return status < 400 or (status >= 500 and status != 503)


class Idempotency:
    def __init__(self, store: ExecutionStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        # Claims this process owns: key -> (execution id, set once settled or released).
        self._owned: dict[str, tuple[str, asyncio.Event]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def claim(
        self, key: str, fingerprint: str, shown_key: str, execution_id: str, in_flight_for: float
    ) -> Claim:
        """Claim ``key`` for a request about to run as ``execution_id``, or find what holds it.

        ``in_flight_for`` (seconds) bounds the claim: if its owner dies without settling it,
        the key is free again after that long. A key held for another request (another
        fingerprint) raises ``IdempotencyConflict``."""
        while True:
            entry = IdempotencyEntry(
                key, fingerprint, execution_id, IN_FLIGHT, b"", time.time() + in_flight_for
            )
            if await self._store.put_idempotency(entry):
                self._owned[key] = (execution_id, asyncio.Event())
                return Claim(True, entry)
            held = await self._store.get_idempotency(key)
            if held is None:
                continue  # expired or released in between: claim again
            if held.request_hash != fingerprint:
                raise IdempotencyConflict(
                    f"Idempotency-Key {shown_key!r} was already used for a different request",
                    details={"idempotency_key": shown_key, "workflow_id": held.execution_id},
                )
            return Claim(False, held)

    async def wait(
        self,
        entry: IdempotencyEntry,
        ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> IdempotencyEntry | None:
        """Wait while the in-flight ``entry`` is unchanged: the settled entry, or None once the
        claim is gone (released, expired, or taken over: claim again). When ``ready`` is given
        and answers True first, returns ``entry`` as it is (e.g. its execution can be followed).
        """
        key = entry.key
        delay = 0.005
        while True:
            if ready is not None and await ready():
                return entry
            owned = self._owned.get(key)
            if owned is not None and owned[0] == entry.execution_id:  # woken when it ends
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if ready is None else delay):
                        await owned[1].wait()
            else:
                await asyncio.sleep(delay)
            delay = min(delay * 2, WAIT_POLL)
            held = await self._store.get_idempotency(key)
            if held is None or held.execution_id != entry.execution_id:
                return None
            if held.status != IN_FLIGHT:
                return held

    async def settle(self, claim: IdempotencyEntry, outcome: Outcome) -> None:
        """Remember ``outcome`` under the claimed key if worth it, else free the key."""
        if not worth_remembering(outcome.status):
            await self.release(claim)
            return
        entry = IdempotencyEntry(
            claim.key,
            claim.request_hash,
            claim.execution_id,
            outcome.status,
            outcome.body,
            time.time() + self._ttl,
        )
        try:
            await self._store.settle_idempotency(entry)
        except NexusError as exc:  # the execution ran; its client still gets its answer
            log.warning("could not store idempotency key for %s: %s", entry.execution_id, exc)
        finally:
            self._done(claim)

    async def release(self, claim: IdempotencyEntry) -> None:
        """Free the claimed key: a retry runs afresh."""
        try:
            await self._store.release_idempotency(claim.key, claim.execution_id)
        except NexusError as exc:  # the claim expires on its own
            log.warning("could not release idempotency key of %s: %s", claim.execution_id, exc)
        finally:
            self._done(claim)

    async def once(
        self,
        key: str,
        fingerprint: str,
        shown_key: str,
        attempt: Callable[[], Awaitable[tuple[Outcome, Any]]],
        execution_id: Callable[[], str | None],
        in_flight_for: float = 60.0,
    ) -> tuple[IdempotencyEntry | None, Any]:
        """A whole request in one call, for a channel that answers once (no stream): ``(entry,
        None)`` when ``key`` holds this request's outcome (replay it; a repeat of a request in
        flight waits for it), else ``(None, answer)`` after running ``attempt`` (which returns
        its outcome and the channel's answer). ``execution_id()`` is the id the run will have.
        When ``attempt`` raises a ``NexusError`` after its execution ran, the error's envelope
        is remembered."""
        while True:
            claim = await self.claim(
                key, fingerprint, shown_key, execution_id() or new_execution_id(), in_flight_for
            )
            if claim.owned:
                break
            entry: IdempotencyEntry | None = claim.entry
            if claim.entry.status == IN_FLIGHT:
                entry = await self.wait(claim.entry)
            if entry is not None:
                return entry, None
        try:
            outcome, answer = await attempt()
        except NexusError as exc:
            body = orjson.dumps(error_envelope(exc, claim.entry.execution_id))
            await self.settle(claim.entry, Outcome(exc.status, body, claim.entry.execution_id))
            raise
        except BaseException:
            await asyncio.shield(self.release(claim.entry))
            raise
        await self.settle(claim.entry, outcome)
        return None, answer

    def later(self, work: Awaitable[None]) -> None:
        """Settle or release once ``work`` (which does it) completes, after the request ended:
        a stream whose client left settles when its execution ends."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop waiting for executions that outlived their requests (their claims expire)."""
        tasks = list(self._background)
        if not tasks:
            return
        await asyncio.wait(tasks, timeout=1.0)  # runs just cancelled settle at once
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, claim: IdempotencyEntry) -> None:
        owned = self._owned.get(claim.key)
        if owned is not None and owned[0] == claim.execution_id:
            del self._owned[claim.key]
            owned[1].set()
