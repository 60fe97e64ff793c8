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
import dataclasses
import enum
import heapq
import json
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from nexus_aio.envelope import iso_or_none
from nexus_aio.errors import Interrupted, ValidationError

__all__ = [
    "ACTIVE",
    "EVERYONE",
    "INTERRUPTED_ERROR",
    "LIST_VALUE_LIMIT",
    "STATUSES",
    "SUMMARISED_FIELDS",
    "TERMINAL",
    "Everyone",
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
    "json_bytes",
    "json_text",
    "matches",
    "newer_events",
    "newest_first",
    "sort_key",
    "summarise",
]

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "interrupted"})
ACTIVE = ("queued", "running")
INTERRUPTED_ERROR: dict[str, Any] = Interrupted().to_dict()

LIST_VALUE_LIMIT = 4096
"""Bytes of JSON above which a listed record carries ``inputs``, ``result`` or ``error`` as None
(named in ``truncated``); ``GET /executions/{id}`` still returns them in full."""
SUMMARISED_FIELDS = ("inputs", "result", "error")


class Everyone(enum.Enum):
    """The type of :data:`EVERYONE`."""

    EVERYONE = "everyone"


EVERYONE = Everyone.EVERYONE
"""``visible_to`` of :meth:`ExecutionStore.list` when the caller may see every record."""

SortKey = tuple[float, str]
"""How every store orders records: ``(created_at, id)``, listed in descending order."""
_R = TypeVar("_R")


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
    trace_id: str | None = None  # the W3C trace of the request that started it
    trigger: str | None = None  # "schedule" when a schedule started it (None: a client)
    schedule_id: str | None = None
    owner: str | None = None  # the process running it ("host:pid"), for recovery after a crash
    #: Fields a listing left out (None here) because their JSON is above its size limit.
    truncated: tuple[str, ...] = ()

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
            self.trace_id,
            self.trigger,
            self.schedule_id,
            self.owner,
            self.truncated,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``GET /executions/{id}``.

        ``workflow_id`` repeats ``id`` because the envelopes call the execution id that; ``result``
        appears only once succeeded (a partial result is not an answer) and ``error`` only when set.
        A listed record whose fields were left out says so: ``"truncated": ["inputs", ...]``
        (those fields are null; absent when nothing was left out).
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
        if self.error is not None or "error" in self.truncated:
            data["error"] = self.error
        data["created_at"] = iso_or_none(self.created_at)
        data["started_at"] = iso_or_none(self.started_at)
        data["finished_at"] = iso_or_none(self.finished_at)
        data["session_id"] = self.session_id
        data["request_id"] = self.request_id
        data["trace_id"] = self.trace_id
        if self.trigger is not None:
            data["trigger"] = self.trigger
            data["schedule_id"] = self.schedule_id
        if self.truncated:
            data["truncated"] = list(self.truncated)
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
    record: ExecutionRecord,
    workflow: str | None,
    status: str | None,
    after: SortKey | None,
    visible_to: str | Everyone | None = EVERYONE,
) -> bool:
    """Whether ``record`` passes :meth:`ExecutionStore.list` filters and lies past the cursor."""
    return (
        (workflow is None or record.workflow == workflow)
        and (status is None or record.status == status)
        and (after is None or sort_key(record) < after)
        and (visible_to is EVERYONE or record.actor is None or record.actor == visible_to)
    )


def summarise(record: ExecutionRecord, max_value_bytes: int | None) -> ExecutionRecord:
    """``record`` as a listing shows it: ``inputs``, ``result`` and ``error`` whose JSON is
    above ``max_value_bytes`` become None and are named in ``truncated`` (a copy when changed)."""
    if max_value_bytes is None:
        return record
    dropped = tuple(
        name
        for name in SUMMARISED_FIELDS
        if (value := getattr(record, name)) is not None and len(json_bytes(value)) > max_value_bytes
    )
    if not dropped:
        return record
    short = record.copy()
    for name in dropped:
        setattr(short, name, None)
    short.truncated = dropped
    return short


def newest_first(
    candidates: Iterable[_R], limit: int, key: Callable[[Any], SortKey] = sort_key
) -> tuple[list[_R], str | None]:
    """A page of ``candidates``, newest first by ``key``; a next cursor only when more follow."""
    ordered = heapq.nlargest(limit + 1, candidates, key=key)
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, None
    created_at, execution_id = key(page[-1])
    return page, encode_cursor(created_at, execution_id)


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


def json_bytes(value: Any) -> bytes:
    """JSON (UTF-8) for any value: what JSON cannot hold as it is is stored as ``str(value)``.

    Stores that serialise records and events use it: a write must never fail because of one odd
    result (that would leave the run "running" forever, or wedge a whole write-behind batch), so
    the fallbacks end in a plain string. Non-string keys become strings, as in the responses.
    """
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:  # e.g. integers beyond 64 bits, which the stdlib encodes
        return json.dumps(value, default=str).encode()
    except Exception:  # a __str__ that raises, a cycle...: never let one value wedge a write
        pass
    try:
        return orjson.dumps(repr(value))
    except Exception:
        return b'"<unserialisable>"'


def json_text(value: Any) -> str:
    """:func:`json_bytes` as text."""
    return json_bytes(value).decode()


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
        visible_to: str | Everyone | None = EVERYONE,
        max_value_bytes: int | None = None,
    ) -> tuple[builtins.list[ExecutionRecord], str | None]:
        """Newest first (created_at desc, id desc); returns the page and the next cursor or None.

        ``visible_to``: only records of that actor id and anonymous ones (None: anonymous ones
        only), filtered in the store's query so that a page is full and no other actor's rows
        are loaded. ``max_value_bytes``: ``inputs``, ``result`` and ``error`` above that many
        bytes of JSON come back as None and named in ``truncated`` (see :func:`summarise`), so a
        page costs memory by its length, not by what the workflows were given or returned.

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
    async def mark_interrupted(self, owner: str | None = None) -> int:
        """At startup: records left queued/running become ``interrupted``; returns how many.
        ``owner``: only those of that (dead) process (``serve --workers`` replacing a worker)."""

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
    async def settle_idempotency(self, entry: IdempotencyEntry) -> bool:
        """Replace the entry of ``entry.key`` with ``entry`` if it still names
        ``entry.execution_id`` (an in-flight claim becoming the remembered outcome, atomic);
        False when another entry holds the key, or none."""

    @abstractmethod
    async def release_idempotency(self, key: str, execution_id: str) -> bool:
        """Delete the entry of ``key`` if it names ``execution_id`` (atomic); True if deleted."""

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
#: What one stored record or event costs besides its JSON (object headers, times, ids, dict slot).
RECORD_OVERHEAD = 400
EVENT_OVERHEAD = 120


def _held_json(value: Any) -> bytes:
    """:func:`json_bytes` for a value the store keeps: orjson's result keeps its whole output
    buffer allocated (4 KiB for the smallest value), an exact copy only what it holds."""
    return memoryview(json_bytes(value)).tobytes()


class _StoredRecord:
    """A saved record with ``inputs``, ``result`` and ``error`` kept as JSON: a true snapshot,
    and its size is known, so the store can be bounded by bytes."""

    __slots__ = ("error", "fields", "inputs", "result", "size")

    def __init__(self, record: ExecutionRecord) -> None:
        self.fields = record.copy()
        self.fields.inputs, self.fields.result, self.fields.error = {}, None, None
        self.inputs = _held_json(record.inputs)
        self.result = None if record.result is None else _held_json(record.result)
        self.error = None if record.error is None else _held_json(record.error)
        self.size = (
            RECORD_OVERHEAD
            + len(self.inputs)
            + (0 if self.result is None else len(self.result))
            + (0 if self.error is None else len(self.error))
        )

    @property
    def status(self) -> str:
        return self.fields.status

    def record(self, max_value_bytes: int | None = None) -> ExecutionRecord:
        """The record (``max_value_bytes``: as a listing shows it, see :func:`summarise`)."""
        record = self.fields.copy()
        dropped: builtins.list[str] = []
        for name in SUMMARISED_FIELDS:
            raw: bytes | None = getattr(self, name)
            if raw is None:
                continue
            if max_value_bytes is not None and len(raw) > max_value_bytes:
                dropped.append(name)
                setattr(record, name, None)
            else:
                setattr(record, name, orjson.loads(raw))
        if dropped:
            record.truncated = tuple(dropped)
        return record


class _StoredEvent:
    __slots__ = ("data", "seq", "ts", "type")

    def __init__(self, event: ExecutionEvent) -> None:
        self.seq = event.seq
        self.type = event.type
        self.data = _held_json(event.data)
        self.ts = event.ts

    def event(self) -> ExecutionEvent:
        return ExecutionEvent(self.seq, self.type, orjson.loads(self.data), self.ts)


class MemoryExecutionStore(ExecutionStore):
    """Everything in dicts, for tests and servers that need no history across restarts.

    Bounded by ``max_records`` and by ``max_bytes`` (the JSON of records and their events, plus
    a fixed overhead per item): saving or logging beyond either drops the oldest finished
    records (insertion order) with their events, so a long-running server cannot grow without
    limit. Queued and running records are never dropped: a client is waiting for them (their
    number is bounded by ``max_concurrent_requests`` and ``max_queued_runs``). Values are kept
    as JSON, as the SQLite store keeps them. Idempotency entries are bounded by count
    (``max_idempotency_keys``) and by bytes (``max_idempotency_bytes``, counting keys,
    fingerprints and remembered bodies): beyond either, the oldest entries are dropped first;
    an answer larger than the whole budget is not remembered.
    """

    def __init__(
        self,
        *,
        max_records: int = 10_000,
        max_bytes: int | None = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        max_idempotency_keys: int = 10_000,
        max_idempotency_bytes: int = 64 * 1024 * 1024,
    ):
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if max_idempotency_keys < 1 or max_idempotency_bytes < 1:
            raise ValueError("idempotency bounds must be at least 1")
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._clock = clock
        self._records: dict[str, _StoredRecord] = {}
        # Ids in the order of their first save: eviction takes from the left (O(1) amortised;
        # copying the record dict's keys on every save at the bound cost O(max_records)).
        self._order: deque[str] = deque()
        self._events: dict[str, builtins.list[_StoredEvent]] = {}
        self._event_bytes: dict[str, int] = {}
        self._bytes = 0  # records and events held
        self._idempotency: dict[str, IdempotencyEntry] = {}
        self._max_idempotency_keys = max_idempotency_keys
        self._max_idempotency_bytes = max_idempotency_bytes
        self._idempotency_bytes = 0

    @property
    def size_bytes(self) -> int:
        """What the held records and events count for against ``max_bytes``."""
        return self._bytes

    async def save(self, record: ExecutionRecord, *, durable: bool = False) -> None:
        stored = _StoredRecord(record)
        records = self._records
        previous = records.get(record.id)
        if previous is not None:
            self._bytes -= previous.size
        else:
            self._order.append(record.id)
        records[record.id] = stored
        self._bytes += stored.size
        self._evict(keep=record.id)

    def _over(self) -> bool:
        return len(self._records) > self._max_records or (
            self._max_bytes is not None and self._bytes > self._max_bytes
        )

    def _evict(self, keep: str) -> None:
        """Drop the oldest finished records (with their events) while over a bound."""
        if not self._over():
            return
        order, records = self._order, self._records
        skipped: builtins.list[str] = []  # unfinished (or ``keep``): they keep their place
        while order and self._over():
            execution_id = order.popleft()
            stored = records.get(execution_id)
            if stored is None:
                continue
            if execution_id == keep or stored.status not in TERMINAL:
                skipped.append(execution_id)
                continue
            self._drop(execution_id)
        order.extendleft(reversed(skipped))

    def _drop(self, execution_id: str) -> None:
        stored = self._records.pop(execution_id)
        self._bytes -= stored.size + self._event_bytes.pop(execution_id, 0)
        self._events.pop(execution_id, None)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        stored = self._records.get(execution_id)
        return None if stored is None else stored.record()

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        visible_to: str | Everyone | None = EVERYONE,
        max_value_bytes: int | None = None,
    ) -> tuple[builtins.list[ExecutionRecord], str | None]:
        check_list_args(status, limit)
        after = None if cursor is None else decode_cursor(cursor)
        chosen = (
            s
            for s in self._records.values()
            if matches(s.fields, workflow, status, after, visible_to)
        )
        page, next_cursor = newest_first(chosen, limit, key=_stored_key)
        return [s.record(max_value_bytes) for s in page], next_cursor

    async def add_events(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        held = self._events.get(execution_id)
        last = held[-1].seq if held else 0
        fresh = [_StoredEvent(e) for e in events if e.seq > last]
        if not fresh:
            return
        if held is None:
            self._events[execution_id] = fresh
        else:
            held.extend(fresh)
        size = sum(EVENT_OVERHEAD + len(e.data) for e in fresh)
        self._event_bytes[execution_id] = self._event_bytes.get(execution_id, 0) + size
        self._bytes += size
        self._evict(keep=execution_id)

    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        return [e.event() for e in self._events.get(execution_id, ()) if e.seq > after_seq]

    async def mark_interrupted(self, owner: str | None = None) -> int:
        now = self._clock()
        active = [
            s
            for s in self._records.values()
            if s.status in ACTIVE and (owner is None or s.fields.owner == owner)
        ]
        for stored in active:
            interrupt(stored.fields, now)
            stored.error = _held_json(stored.fields.error)
            stored.fields.error = None
        return len(active)

    async def purge(self, *, max_age: float | None = None, max_count: int | None = None) -> int:
        doomed: set[str] = set()
        if max_age is not None:
            cutoff = self._clock() - max_age
            doomed.update(
                i
                for i, s in self._records.items()
                if s.fields.finished_at is not None and s.fields.finished_at < cutoff
            )
        if max_count is not None:
            ordered = sorted(self._records.values(), key=_stored_key, reverse=True)
            doomed.update(s.fields.id for s in ordered[max_count:] if s.status in TERMINAL)
        for execution_id in doomed:
            self._drop(execution_id)
        if doomed:
            self._order = deque(i for i in self._order if i in self._records)
        self._drop_expired_idempotency()
        return len(doomed)

    async def get_idempotency(self, key: str) -> IdempotencyEntry | None:
        entry = self._idempotency.get(key)
        if entry is None or entry.expires_at > self._clock():
            return entry
        self._forget_idempotency(key)
        return None

    async def put_idempotency(self, entry: IdempotencyEntry) -> bool:
        if await self.get_idempotency(entry.key) is not None:
            return False
        return self._remember_idempotency(entry)

    async def settle_idempotency(self, entry: IdempotencyEntry) -> bool:
        held = self._idempotency.get(entry.key)
        if held is None or held.execution_id != entry.execution_id:
            return False
        self._forget_idempotency(entry.key)
        return self._remember_idempotency(entry)

    async def release_idempotency(self, key: str, execution_id: str) -> bool:
        held = self._idempotency.get(key)
        if held is None or held.execution_id != execution_id:
            return False
        self._forget_idempotency(key)
        return True

    def _remember_idempotency(self, entry: IdempotencyEntry) -> bool:
        """Store ``entry`` (its key is free), dropping the oldest entries beyond the bounds."""
        size = _idempotency_size(entry)
        if size > self._max_idempotency_bytes:
            return False  # larger than the whole budget: not remembered
        entries = self._idempotency
        if (
            len(entries) >= self._max_idempotency_keys
            or self._idempotency_bytes + size > self._max_idempotency_bytes
        ):
            self._drop_expired_idempotency()
            while entries and (
                len(entries) >= self._max_idempotency_keys
                or self._idempotency_bytes + size > self._max_idempotency_bytes
            ):
                self._forget_idempotency(next(iter(entries)))
        if entry.body:  # an exact copy: an answer from orjson keeps its whole output buffer
            entry = dataclasses.replace(entry, body=memoryview(entry.body).tobytes())
        entries[entry.key] = entry
        self._idempotency_bytes += size
        return True

    def _forget_idempotency(self, key: str) -> None:
        entry = self._idempotency.pop(key, None)
        if entry is not None:
            self._idempotency_bytes -= _idempotency_size(entry)

    async def ping(self) -> None:
        return None

    def _drop_expired_idempotency(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._idempotency.items() if e.expires_at <= now]:
            self._forget_idempotency(key)


_ENTRY_OVERHEAD = 200  # bytes of an entry besides its strings and body (objects, dict slot)


def _idempotency_size(entry: IdempotencyEntry) -> int:
    """What an entry is counted as against ``max_idempotency_bytes``."""
    return (
        len(entry.key)
        + len(entry.request_hash)
        + len(entry.execution_id)
        + len(entry.body)
        + _ENTRY_OVERHEAD
    )


def _stored_key(stored: _StoredRecord) -> SortKey:
    return (stored.fields.created_at, stored.fields.id)
