"""The event log of one execution and the envelopes its closing events carry.

Every execution, whatever its mode, logs the sequence its stream shows: ``start``, then node,
chunk, progress and custom events, then ``complete`` or ``error``. The log is stored as it was
pushed, so a replay serves the same ids, data and timestamps the live stream showed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from nexus_aio.envelope import error_envelope, iso_timestamp, success_envelope
from nexus_aio.errors import NexusError
from nexus_aio.stores.executions import TERMINAL, ExecutionEvent, ExecutionRecord

__all__ = ["CLOSING_EVENTS", "EventLog", "closing_event", "envelope_for", "start_data"]

CLOSING_EVENTS = frozenset({"complete", "error"})
# HTTP status of a finished execution's envelope when it did not succeed.
_STATUS_BY_RECORD = {"failed": 500, "timed_out": 504, "cancelled": 409, "interrupted": 500}


class EventLog:
    """The ordered events of one execution, with a wake-up for live followers."""

    __slots__ = ("_changed", "events", "finished", "on_push", "persist")

    def __init__(self, persist: bool) -> None:
        self.events: list[ExecutionEvent] = []
        self.finished = False
        # Whether the periodic persister stores these events while the run goes on (stream and
        # async runs); a sync run's log is stored with its final record.
        self.persist = persist
        self._changed: asyncio.Event | None = None
        # Set when the store shares events live with other processes (``live_events``).
        self.on_push: Callable[[ExecutionEvent], None] | None = None

    def push(self, event: str, data: Any) -> None:
        self.events.append(ExecutionEvent(len(self.events) + 1, event, data, time.time()))
        if self.on_push is not None:
            self.on_push(self.events[-1])
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def finish(self) -> None:
        self.finished = True
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def changed(self) -> asyncio.Event:
        """An event set at the next push or at finish (for followers that also keep time)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def follow(self, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        index = max(after_seq, 0)
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.finished:
                return
            await self.changed().wait()


def start_data(record: ExecutionRecord, at: float) -> dict[str, Any]:
    data = {"workflow_id": record.id, "name": record.workflow, "timestamp": iso_timestamp(at)}
    if record.trace_id is not None:
        data["trace_id"] = record.trace_id
    return data


def envelope_for(record: ExecutionRecord) -> tuple[int, dict[str, Any]]:
    """The status and envelope of a finished execution, rebuilt from its record alone.

    Deterministic (timestamps come from the record), so two rebuilds are byte-identical; used
    where no closing event was stored (a run interrupted by a crash).
    """
    at = record.finished_at
    if record.status == "succeeded":
        elapsed = (record.finished_at or 0) - (record.started_at or record.created_at)
        envelope = success_envelope(record.result, record.id, elapsed, at)
        if record.session_id:
            envelope["session_id"] = record.session_id
        return 200, envelope
    error: dict[str, Any] | NexusError = record.error or NexusError(record.status)
    return _STATUS_BY_RECORD.get(record.status, 500), error_envelope(error, record.id, at)


def closing_event(record: ExecutionRecord, last: ExecutionEvent | None) -> ExecutionEvent | None:
    """The ``complete``/``error`` event a finished execution's stored log lacks (a run cut off by
    a crash never logged its end), numbered after the last stored one."""
    if record.status not in TERMINAL or (last is not None and last.type in CLOSING_EVENTS):
        return None
    kind = "complete" if record.status == "succeeded" else "error"
    seq = (last.seq if last else 0) + 1
    return ExecutionEvent(seq, kind, envelope_for(record)[1], record.finished_at or 0)
