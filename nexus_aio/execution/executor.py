"""Executors: where async runs wait and run. ``LocalExecutor`` is the in-process default.

An async submission is a job, not an HTTP request: it is recorded as ``queued`` (durably, so an
accepted run is never lost silently), waits in a bounded queue for one of the
``max_concurrent_requests`` running slots, and runs under ``run_timeout`` (or the workflow's own
``timeout``). A plugin may supply another executor through the ``executor`` hook (the Redis
plugin hands async runs to arq workers); it implements the same :class:`Executor` protocol.

A run whose attempt failed and whose ``RetryPolicy`` asks for another waits out its backoff here,
``queued`` and without a slot, then joins the queue again like a new run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from nexus_aio.errors import Cancelled, Interrupted, ServiceUnavailable
from nexus_aio.execution.runtime import LiveExecution, Runtime, Submission
from nexus_aio.stores.executions import ExecutionEvent, ExecutionRecord

__all__ = ["Executor", "LocalExecutor"]


@runtime_checkable
class Executor(Protocol):
    """Runs async-mode submissions somewhere: in this process or on queue workers."""

    async def submit(self, sub: Submission) -> ExecutionRecord:
        """Accept ``sub``: store its ``queued`` record durably and run it when it can.

        Raises ``ServiceUnavailable`` (with ``Retry-After``) when it cannot take more runs.
        """
        ...

    async def cancel(self, execution_id: str) -> bool:
        """Cancel a run this executor accepted and that has not finished; False if unknown."""
        ...

    def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        """The run's events after ``after_seq``, as they happen, until it has ended."""
        ...

    async def close(self) -> None:
        """Stop taking runs; runs still waiting become ``interrupted``."""
        ...


class LocalExecutor:
    """Async runs in this process: a FIFO of runs waiting for a slot, bounded by
    ``max_queued_runs`` (runs waiting out a retry backoff count too); a slot freed by any run
    goes to the oldest waiting one."""

    def __init__(self, runtime: Runtime, max_queued: int) -> None:
        self.runtime = runtime
        self.max_queued = max_queued
        self._waiting: deque[tuple[Submission, LiveExecution]] = deque()
        self._reserved = 0  # submissions between the capacity check and joining the queue
        # Runs between two attempts, by id: the timer that queues them again.
        self._backoff: dict[str, tuple[asyncio.TimerHandle, LiveExecution]] = {}
        runtime.on_slot_free = self._hand_over

    async def submit(self, sub: Submission) -> ExecutionRecord:
        runtime = self.runtime
        queued = len(self._waiting) + len(self._backoff) + self._reserved
        if queued >= self.max_queued and not runtime.has_free_slot:
            raise ServiceUnavailable(
                f"The queue of async runs is full ({self.max_queued} waiting); retry soon",
                headers={"Retry-After": "1"},
                details={"max_queued_runs": self.max_queued},
            )
        record = runtime.new_record(sub, "queued")
        self._reserved += 1
        try:
            await runtime.executions.save(record, durable=True)
        finally:
            self._reserved -= 1
        live = runtime.track(sub, record)
        live.on_retry = self._retry_later
        self._enqueue(sub, live)
        return record

    def _enqueue(self, sub: Submission, live: LiveExecution) -> None:
        runtime = self.runtime
        if not self._waiting and runtime.has_free_slot:
            runtime.running += 1
            runtime.launch(sub, live)
        else:
            self._waiting.append((sub, live))

    def _retry_later(self, sub: Submission, live: LiveExecution, delay: float) -> None:
        """The runtime parked ``live`` after a failed attempt: queue it again in ``delay`` s."""
        execution_id = live.record.id
        timer = asyncio.get_running_loop().call_later(delay, self._retry_due, sub, live)
        self._backoff[execution_id] = (timer, live)

    def _retry_due(self, sub: Submission, live: LiveExecution) -> None:
        if self._backoff.pop(live.record.id, None) is not None:
            self._enqueue(sub, live)

    def _hand_over(self) -> bool:
        """A slot is free: start the oldest waiting run on it (the slot stays taken)."""
        if not self._waiting:
            return False
        sub, live = self._waiting.popleft()
        self.runtime.launch(sub, live)
        return True

    async def cancel(self, execution_id: str) -> bool:
        """A waiting run ends ``cancelled`` here; one that another process owns (``--workers``
        on a shared store) gets a cancel request if the store can carry one."""
        for entry in self._waiting:
            if entry[1].record.id == execution_id:
                self._waiting.remove(entry)
                await self.runtime.drop(entry[1], Cancelled())
                return True
        parked = self._backoff.pop(execution_id, None)
        if parked is not None:
            parked[0].cancel()
            await self.runtime.drop(parked[1], Cancelled())
            return True
        return await self.runtime.executions.request_cancel(execution_id)

    def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        return self.runtime.executions.follow(execution_id, after_seq)

    async def close(self) -> None:
        waiting, self._waiting = self._waiting, deque()
        parked, self._backoff = self._backoff, {}
        for timer, _ in parked.values():
            timer.cancel()
        for live in [live for _, live in waiting] + [live for _, live in parked.values()]:
            await self.runtime.drop(live, Interrupted())
