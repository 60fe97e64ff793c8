"""Execution records, their event logs and idempotency keys: the store interface.

Every execution has a record (status, inputs, result or error, times) and an ordered event log.
This module holds the data, the :class:`ExecutionStore` interface, the paging helpers every store
shares, and :class:`MemoryExecutionStore` (tests and throwaway servers). The embedded default,
durable across restarts, is :class:`~nexus_aio.stores.sqlite_executions.SQLiteExecutionStore`; the
Redis plugin implements the same interface, and ``nexus_aio.testing.ExecutionStoreContract`` is
the test suite every implementation passes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from nexus_aio.envelope import iso_or_none
from nexus_aio.errors import Interrupted, ValidationError

__all__ = [
    "ACTIVE",
    "INTERRUPTED_ERROR",
    "STATUSES",
    "TERMINAL",
    "ExecutionEvent",
    "ExecutionRecord",
    "ExecutionStore",
    "IdempotencyEntry",
    "MemoryExecutionStore",
    "check_list_args",
    "decode_cursor",
    "encode_cursor",
    "events_after",
    "interrupt",
    "json_text",
    "matches",
    "newer_events",
    "newest_first",
    "sort_key",
]

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "interrupted"})
ACTIVE = ("queued", "running")
INTERRUPTED_ERROR: dict[str, Any] = Interrupted().to_dict()

SortKey = tuple[float, str]
"""How every store orders records: ``(created_at, id)``, listed in descending order."""


# -- data -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class ExecutionRecord:
    """The state of one execution; the store keeps a snapshot taken at each ``save()``."""

    id: str
    workflow: str
    mode: str  # "sync" | "stream" | "async"
    status: str
    inputs: dict[str, Any]
    created_at: float  # time.time() epoch seconds
    result: Any = None
    error: dict[str, Any] | None = None  # {"type", "message", "details"}
    started_at: float | None = None
    finished_at: float | None = None
    session_id: str | None = None
    request_id: str | None = None
    actor: str | None = None  # actor id, for scoping
    attempts: int = 1  # the current (or last) attempt: 1 until a retry policy runs it again

    def copy(self) -> ExecutionRecord:
        """A shallow copy: stores keep snapshots so later mutation by the runtime is not a write."""
        return ExecutionRecord(
            self.id,
            self.workflow,
            self.mode,
            self.status,
            self.inputs,
            self.created_at,
            self.result,
            self.error,
            self.started_at,
            self.finished_at,
            self.session_id,
            self.request_id,
            self.actor,
            self.attempts,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``GET /executions/{id}``.

        ``workflow_id`` repeats ``id`` because the envelopes call the execution id that; ``result``
        appears only once succeeded (a partial result is not an answer) and ``error`` only when set.
        """
        data: dict[str, Any] = {
            "id": self.id,
            "workflow_id": self.id,
            "name": self.workflow,
            "mode": self.mode,
            "status": self.status,
            "attempts": self.attempts,
            "inputs": self.inputs,
        }
        if self.status == "succeeded":
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        data["created_at"] = iso_or_none(self.created_at)
        data["started_at"] = iso_or_none(self.started_at)
        data["finished_at"] = iso_or_none(self.finished_at)
        data["session_id"] = self.session_id
        data["request_id"] = self.request_id
        return data


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """One entry of an execution's event log; ``seq`` lets SSE clients resume (Last-Event-ID)."""

    seq: int  # 1-based, gapless per execution
    type: str  # "start", "node_start", "chunk", "progress", "complete", "error", custom...
    data: Any  # JSON-serialisable
    ts: float


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """The response remembered for an ``Idempotency-Key`` so a retry gets the same answer."""

    key: str  # already scoped by the caller, e.g. "actor:alice:my-key"
    request_hash: str
    execution_id: str
    status: int  # HTTP status of the original response
    body: bytes  # the original response body
    expires_at: float


# -- helpers shared by every store: cursors, paging, event logs, JSON --------------------------
def encode_cursor(created_at: float, execution_id: str) -> str:
    """An opaque, URL-safe cursor naming the last record of a page (sort key: created_at, id)."""
    raw = orjson.dumps([created_at, execution_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> SortKey:
    """Inverse of :func:`encode_cursor`; anything else is the client's mistake, hence a 400."""
    try:
        if len(cursor) > 1024:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, execution_id = orjson.loads(raw)
        if isinstance(created_at, bool) or not isinstance(created_at, int | float):
            raise ValueError("bad timestamp")
        if not isinstance(execution_id, str):
            raise ValueError("bad id")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationError(
            "Invalid cursor", details={"field": "cursor", "message": "not a cursor from this API"}
        ) from exc
    return float(created_at), execution_id


def sort_key(record: ExecutionRecord) -> SortKey:
    """The order of :meth:`ExecutionStore.list` (descending) and of its cursors."""
    return (record.created_at, record.id)


def check_list_args(status: str | None, limit: int) -> None:
    """The checks of :meth:`ExecutionStore.list` arguments, as 400s naming the field."""
    if status is not None and status not in STATUSES:
        raise ValidationError(
            f"Unknown status: {status}",
            details={"field": "status", "expected": list(STATUSES), "received": status},
        )
    if limit < 1:
        raise ValidationError(
            "limit must be at least 1", details={"field": "limit", "received": limit}
        )


def matches(
    record: ExecutionRecord, workflow: str | None, status: str | None, after: SortKey | None
) -> bool:
    """Whether ``record`` passes :meth:`ExecutionStore.list` filters and lies past the cursor."""
    return (
        (workflow is None or record.workflow == workflow)
        and (status is None or record.status == status)
        and (after is None or sort_key(record) < after)
    )


def newest_first(
    candidates: Iterable[ExecutionRecord], limit: int
) -> tuple[list[ExecutionRecord], str | None]:
    """A page of ``candidates``, newest first; a next cursor only when more records follow."""
    ordered = sorted(candidates, key=sort_key, reverse=True)
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, None
    return page, encode_cursor(page[-1].created_at, page[-1].id)


def interrupt(record: ExecutionRecord, now: float) -> None:
    """What :meth:`ExecutionStore.mark_interrupted` does to one queued or running record."""
    record.status = "interrupted"
    record.finished_at = now
    record.error = dict(INTERRUPTED_ERROR, details={})


def newer_events(
    events: Sequence[ExecutionEvent], held: Sequence[ExecutionEvent]
) -> Sequence[ExecutionEvent]:
    """The part of ``events`` numbered after the last event in ``held`` (re-adds are no-ops)."""
    if not held or not events or events[0].seq > held[-1].seq:
        return events
    last = held[-1].seq
    return [e for e in events if e.seq > last]


def events_after(events: Iterable[ExecutionEvent], after_seq: int) -> list[ExecutionEvent]:
    """The events numbered after ``after_seq``, in order."""
    return [e for e in events if e.seq > after_seq]


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_text(value: Any) -> str:
    """JSON text for any value: what JSON cannot hold as it is is stored as ``str(value)``.

    Stores that serialise records and events use it: a write must never fail because of one odd
    result (that would leave the run "running" forever, or wedge a whole write-behind batch), so
    the fallbacks end in a plain string. Non-string keys become strings, as in the responses.
    """
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:  # e.g. integers beyond 64 bits, which the stdlib encodes
        return json.dumps(value, default=str)
    except Exception:  # a __str__ that raises, a cycle...: never let one value wedge a write
        pass
    try:
        return orjson.dumps(repr(value)).decode()
    except Exception:
        return '"<unserialisable>"'


# -- interface ---------------------------------------------------------------------------------
class ExecutionStore(ABC):
    """Where execution records, event logs and idempotency keys live.

    All methods are coroutines so that a network store (Redis) fits the same interface. Besides
    the abstract methods, a store declares what it can share with other processes; the defaults
    fit a store that only this process (or a shared file polled by others) uses:

    * ``live_events``: True when :meth:`publish` makes events visible to other processes while the
      run goes on (the runtime then calls it for every event) and :meth:`follow` reads them live;
    * :meth:`follow` by default polls :meth:`events` until the record is terminal;
    * :meth:`request_cancel` / :meth:`cancel_requested`: cancel requests for runs owned by another
      process (default: no other process can be asked).
    """

    live_events: bool = False
    #: How often the default :meth:`follow` re-reads a run owned by another process.
    follow_poll: float = 0.25

    async def open(self) -> None:
        """Acquire resources (connections, schema); called once at startup."""
        return None

    async def close(self) -> None:
        """Release resources, writing everything still pending first."""
        return None

    async def flush(self) -> None:
        """Write deferred rows now; raises StoreUnavailable if they cannot be written."""
        return None

    @abstractmethod
    async def save(self, record: ExecutionRecord, *, durable: bool = False) -> None:
        """Upsert a snapshot of ``record``.

        ``durable=False`` may defer the write (hot path); ``durable=True`` returns only once
        committed and raises StoreUnavailable when that is impossible.
        """

    @abstractmethod
    async def get(self, execution_id: str) -> ExecutionRecord | None:
        """The latest saved state (deferred writes included), or None."""

    @abstractmethod
    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ExecutionRecord], str | None]:
        """Newest first (created_at desc, id desc); returns the page and the next cursor or None.

        A cursor not produced by this method raises ValidationError (field ``cursor``).
        """

    @abstractmethod
    async def add_events(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        """Append events (the caller numbers them); the write may be deferred.

        Events numbered at or below the last one held are skipped, so passing a whole log again
        is harmless.
        """

    @abstractmethod
    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        """Events with ``seq > after_seq`` in order, deferred ones included."""

    @abstractmethod
    async def mark_interrupted(self) -> int:
        """At startup: records left queued/running become ``interrupted``; returns how many."""

    @abstractmethod
    async def purge(self, *, max_age: float | None = None, max_count: int | None = None) -> int:
        """Retention: delete finished records older than ``max_age`` seconds and the oldest
        finished ones beyond ``max_count`` records, with their events. Returns how many.

        Queued and running records are never deleted: they still have a client waiting.
        """

    @abstractmethod
    async def get_idempotency(self, key: str) -> IdempotencyEntry | None:
        """The stored entry, or None if absent or expired."""

    @abstractmethod
    async def put_idempotency(self, entry: IdempotencyEntry) -> bool:
        """Store ``entry`` unless an unexpired one holds the key (atomic); False in that case."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be read or written."""

    # -- abilities shared with other processes (defaults: none) ------------------------------
    def publish(self, record: ExecutionRecord, event: ExecutionEvent) -> None:
        """Make ``event`` (and the record's state) visible to other processes now; must not
        block. Called for every event only when ``live_events`` is True."""
        return None

    async def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        """Events after ``after_seq`` of a run owned by another process, until it has ended.

        The default polls :meth:`events` every ``follow_poll`` seconds while the record is not
        terminal, then yields what the final save added.
        """
        seq = after_seq
        while True:
            record = await self.get(execution_id)
            for event in await self.events(execution_id, seq):
                seq = event.seq
                yield event
            if record is None or record.status in TERMINAL:
                return
            await asyncio.sleep(self.follow_poll)

    async def request_cancel(self, execution_id: str) -> bool:
        """Ask the process that owns ``execution_id`` to cancel it; True when the request was
        placed (or the run cancelled). The default knows no other process: False."""
        return False

    async def cancel_requested(self, execution_id: str) -> bool:
        """Whether a cancel request is pending for ``execution_id`` (polled by its owner)."""
        return False


# -- memory ------------------------------------------------------------------------------------
class MemoryExecutionStore(ExecutionStore):
    """Everything in dicts, for tests and servers that need no history across restarts.

    Bounded by ``max_records``: saving a new record beyond it drops the oldest one (insertion
    order) with its events, so a long-running server cannot grow without limit.
    """

    def __init__(self, *, max_records: int = 10_000, clock: Callable[[], float] = time.time):
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._max_records = max_records
        self._clock = clock
        self._records: dict[str, ExecutionRecord] = {}
        self._events: dict[str, builtins.list[ExecutionEvent]] = {}
        self._idempotency: dict[str, IdempotencyEntry] = {}

    async def save(self, record: ExecutionRecord, *, durable: bool = False) -> None:
        records = self._records
        if record.id not in records and len(records) >= self._max_records:
            oldest = next(iter(records))
            del records[oldest]
            self._events.pop(oldest, None)
        records[record.id] = record.copy()

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        record = self._records.get(execution_id)
        return None if record is None else record.copy()

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ExecutionRecord], str | None]:
        check_list_args(status, limit)
        after = None if cursor is None else decode_cursor(cursor)
        page, next_cursor = newest_first(
            (r for r in self._records.values() if matches(r, workflow, status, after)), limit
        )
        return [r.copy() for r in page], next_cursor

    async def add_events(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        held = self._events.get(execution_id)
        if held is None:
            if events:
                self._events[execution_id] = list(events)
        else:
            held.extend(newer_events(events, held))

    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        return events_after(self._events.get(execution_id, ()), after_seq)

    async def mark_interrupted(self) -> int:
        now = self._clock()
        active = [r for r in self._records.values() if r.status in ACTIVE]
        for record in active:
            interrupt(record, now)
        return len(active)

    async def purge(self, *, max_age: float | None = None, max_count: int | None = None) -> int:
        doomed: set[str] = set()
        if max_age is not None:
            cutoff = self._clock() - max_age
            doomed.update(
                r.id
                for r in self._records.values()
                if r.finished_at is not None and r.finished_at < cutoff
            )
        if max_count is not None:
            newest_first = sorted(self._records.values(), key=sort_key, reverse=True)
            doomed.update(r.id for r in newest_first[max_count:] if r.status in TERMINAL)
        for execution_id in doomed:
            del self._records[execution_id]
            self._events.pop(execution_id, None)
        self._drop_expired_idempotency()
        return len(doomed)

    async def get_idempotency(self, key: str) -> IdempotencyEntry | None:
        entry = self._idempotency.get(key)
        if entry is None or entry.expires_at > self._clock():
            return entry
        del self._idempotency[key]
        return None

    async def put_idempotency(self, entry: IdempotencyEntry) -> bool:
        if await self.get_idempotency(entry.key) is not None:
            return False
        if len(self._idempotency) >= self._max_records:
            self._drop_expired_idempotency()
            if len(self._idempotency) >= self._max_records:
                del self._idempotency[next(iter(self._idempotency))]
        self._idempotency[entry.key] = entry
        return True

    async def ping(self) -> None:
        return None

    def _drop_expired_idempotency(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._idempotency.items() if e.expires_at <= now]:
            del self._idempotency[key]
