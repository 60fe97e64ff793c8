"""Execution records, their event logs and idempotency keys: the store interface and two stores.

Every execution has a record (status, inputs, result or error, times) and an ordered event log.
:class:`MemoryExecutionStore` serves tests and throwaway servers; :class:`SQLiteExecutionStore`
is the embedded default, durable across restarts. A Redis plugin implements the same interface.

The SQLite store sits on the request hot path, so ordinary writes are *deferred*: ``save()`` and
``add_events()`` only touch an in-memory buffer, which a background task writes in one
transaction every ``flush_interval`` seconds (or sooner when it grows). Reads merge that buffer,
so callers never observe the delay. Writes that must survive a crash (async-mode state changes)
pass ``durable=True`` and return only once committed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import json
import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from nexus_aio.envelope import iso_or_none
from nexus_aio.errors import StoreUnavailable, ValidationError
from nexus_aio.stores.sqlite_paths import prepare_parent_directory

__all__ = [
    "INTERRUPTED_ERROR",
    "STATUSES",
    "TERMINAL",
    "ExecutionEvent",
    "ExecutionRecord",
    "ExecutionStore",
    "IdempotencyEntry",
    "MemoryExecutionStore",
    "SQLiteExecutionStore",
    "decode_cursor",
    "encode_cursor",
]

logger = logging.getLogger("nexus_aio.stores.executions")

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "interrupted"})
ACTIVE = ("queued", "running")
INTERRUPTED_ERROR: dict[str, Any] = {
    "type": "Interrupted",
    "message": "The server stopped before this execution finished",
    "details": {},
}

_T = TypeVar("_T")
_SortKey = tuple[float, str]


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


# -- cursors and paging (shared by every store) ----------------------------------------------------
def encode_cursor(created_at: float, execution_id: str) -> str:
    """An opaque, URL-safe cursor naming the last record of a page (sort key: created_at, id)."""
    raw = orjson.dumps([created_at, execution_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> _SortKey:
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


def _sort_key(record: ExecutionRecord) -> _SortKey:
    return (record.created_at, record.id)


def _check_list_args(status: str | None, limit: int) -> None:
    if status is not None and status not in STATUSES:
        raise ValidationError(
            f"Unknown status: {status}",
            details={"field": "status", "expected": list(STATUSES), "received": status},
        )
    if limit < 1:
        raise ValidationError(
            "limit must be at least 1", details={"field": "limit", "received": limit}
        )


def _matches(
    record: ExecutionRecord, workflow: str | None, status: str | None, after: _SortKey | None
) -> bool:
    return (
        (workflow is None or record.workflow == workflow)
        and (status is None or record.status == status)
        and (after is None or _sort_key(record) < after)
    )


def _page(
    candidates: Iterable[ExecutionRecord], limit: int
) -> tuple[list[ExecutionRecord], str | None]:
    """Newest first; a next cursor only when more records follow the page."""
    ordered = sorted(candidates, key=_sort_key, reverse=True)
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, None
    return page, encode_cursor(page[-1].created_at, page[-1].id)


def _interrupt(record: ExecutionRecord, now: float) -> None:
    record.status = "interrupted"
    record.finished_at = now
    record.error = dict(INTERRUPTED_ERROR, details={})


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
        _check_list_args(status, limit)
        after = None if cursor is None else decode_cursor(cursor)
        page, next_cursor = _page(
            (r for r in self._records.values() if _matches(r, workflow, status, after)), limit
        )
        return [r.copy() for r in page], next_cursor

    async def add_events(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        held = self._events.get(execution_id)
        if held is None:
            if events:
                self._events[execution_id] = list(events)
        else:
            held.extend(_newer(events, held))

    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        return _events_after(self._events.get(execution_id, ()), after_seq)

    async def mark_interrupted(self) -> int:
        now = self._clock()
        active = [r for r in self._records.values() if r.status in ACTIVE]
        for record in active:
            _interrupt(record, now)
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
            newest_first = sorted(self._records.values(), key=_sort_key, reverse=True)
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


def _newer(
    events: Sequence[ExecutionEvent], held: Sequence[ExecutionEvent]
) -> Sequence[ExecutionEvent]:
    """The part of ``events`` numbered after the last event in ``held``."""
    if not held or not events or events[0].seq > held[-1].seq:
        return events
    last = held[-1].seq
    return [e for e in events if e.seq > last]


def _events_after(events: Iterable[ExecutionEvent], after_seq: int) -> list[ExecutionEvent]:
    return [e for e in events if e.seq > after_seq]


# -- SQLite ------------------------------------------------------------------------------------
SCHEMA_VERSION = 1
_COMPONENT = "executions"
_RECORD_COLUMNS = (
    "id, workflow, mode, status, inputs, created_at, result, error, started_at, finished_at,"
    " session_id, request_id, actor"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS nexus_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    created_at REAL NOT NULL,
    result TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    session_id TEXT,
    request_id TEXT,
    actor TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_created ON executions (created_at, id);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow, created_at, id);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, created_at, id);
CREATE INDEX IF NOT EXISTS executions_by_finished ON executions (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS execution_events (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency_keys (expires_at);
INSERT OR IGNORE INTO nexus_schema (component, version) VALUES ('{_COMPONENT}', {SCHEMA_VERSION});
"""
_UPSERT_RECORD = (
    f"INSERT INTO executions ({_RECORD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(id) DO UPDATE SET workflow=excluded.workflow, mode=excluded.mode,"
    " status=excluded.status, inputs=excluded.inputs, created_at=excluded.created_at,"
    " result=excluded.result, error=excluded.error, started_at=excluded.started_at,"
    " finished_at=excluded.finished_at, session_id=excluded.session_id,"
    " request_id=excluded.request_id, actor=excluded.actor"
)
# Events are immutable and numbered by the caller, so rewriting one (a retried flush) is harmless.
_INSERT_EVENT = (
    "INSERT OR REPLACE INTO execution_events (execution_id, seq, type, data, ts) VALUES (?,?,?,?,?)"
)
_PUT_IDEMPOTENCY = (
    "INSERT INTO idempotency_keys (key, request_hash, execution_id, status, body, expires_at)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET request_hash=excluded.request_hash,"
    " execution_id=excluded.execution_id, status=excluded.status, body=excluded.body,"
    " expires_at=excluded.expires_at WHERE idempotency_keys.expires_at <= ?"
)
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _dumps(value: Any) -> str:
    """JSON text for any value: what orjson cannot encode is stored as ``str(value)``.

    A flush must never fail because of one odd result (that would wedge the whole buffer), so
    the fallbacks end in a plain string.
    """
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:  # e.g. integers beyond 64 bits, which the stdlib encodes
        return json.dumps(value, default=str)
    except Exception:  # a __str__ that raises, a cycle...: never let one value wedge a flush
        pass
    try:
        return orjson.dumps(repr(value)).decode()
    except Exception:
        return '"<unserialisable>"'


def _loads_or_none(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _record_row(r: ExecutionRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.workflow,
        r.mode,
        r.status,
        _dumps(r.inputs),
        r.created_at,
        None if r.result is None else _dumps(r.result),
        None if r.error is None else _dumps(r.error),
        r.started_at,
        r.finished_at,
        r.session_id,
        r.request_id,
        r.actor,
    )


def _row_record(row: tuple[Any, ...]) -> ExecutionRecord:
    return ExecutionRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        orjson.loads(row[4]),
        row[5],
        _loads_or_none(row[6]),
        _loads_or_none(row[7]),
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
    )


class SQLiteExecutionStore(ExecutionStore):
    """The embedded default: stdlib sqlite3 on one dedicated thread, WAL, deferred batched writes.

    One thread owns the connection, so SQLite never blocks the event loop and needs no locking
    of its own. Deferred rows wait in ``_pending_*``; a flush moves them to ``_inflight_*`` while
    the worker writes them, and back into the buffer if the write fails (every write is an
    idempotent upsert, so retrying is safe). Reads consult pending, then in-flight, then the DB.

    ``busy_timeout`` (seconds) is how long a write waits for another process's lock.
    """

    def __init__(
        self,
        path: str,
        *,
        flush_interval: float = 0.05,
        max_pending: int = 10_000,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 2.0,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.path = path
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._flush_threshold = max(1, max_pending // 4)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending_records: dict[str, ExecutionRecord] = {}
        self._pending_events: dict[str, builtins.list[ExecutionEvent]] = {}
        self._pending_event_count = 0
        self._inflight_records: dict[str, ExecutionRecord] = {}
        self._inflight_events: dict[str, builtins.list[ExecutionEvent]] = {}
        self._flush_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._full = asyncio.Event()
        self._drained = asyncio.Event()  # replaced after every flush attempt; waiters hold one
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0  # consecutive failed flushes; > 0 means a failure streak

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            raise RuntimeError("store is already open")
        self._create_parent_directory()
        # Fresh primitives: a store reopened under another event loop must not reuse old ones.
        self._flush_lock, self._dirty, self._full = asyncio.Lock(), asyncio.Event(), asyncio.Event()
        self._drained = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nexus-sqlite")
        try:
            await self._call(self._connect)
        except sqlite3.Error as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise StoreUnavailable(f"SQLite store at {self.path} cannot be opened: {exc}") from exc
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._closing = False
        self._flusher = asyncio.create_task(self._run_flusher(), name="nexus-sqlite-flusher")

    async def close(self) -> None:
        if self._executor is None:
            return
        self._closing = True
        self._dirty.set()
        self._full.set()
        if self._flusher is not None:
            await self._flusher
            self._flusher = None
        try:
            await self._flush()
        except StoreUnavailable:
            logger.error(
                "SQLite store at %s: closing with %d unwritten rows",
                self.path,
                self._pending_size(),
            )
        await self._call(self._disconnect)
        self._executor.shutdown(wait=False)
        self._executor = None

    def _create_parent_directory(self) -> None:
        prepare_parent_directory(self.path, "SQLite store")

    def _connect(self) -> None:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=True,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
                conn.execute("PRAGMA journal_mode = WAL")
            if not self._schema_is_current(conn):
                conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _schema_is_current(conn: sqlite3.Connection) -> bool:
        """True when the schema exists already, so a read-only database still opens for reads."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'nexus_schema'"
        ).fetchone()
        if exists is None:
            return False
        row = conn.execute(
            "SELECT version FROM nexus_schema WHERE component = ?", (_COMPONENT,)
        ).fetchone()
        if row is not None and row[0] > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {row[0]} is newer than this nexus_aio ({SCHEMA_VERSION})"
            )
        return row is not None and row[0] == SCHEMA_VERSION

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise StoreUnavailable(f"SQLite store at {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self._call(fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store at {self.path} cannot be read: {exc}") from exc

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self._call(fn, *args)
        except sqlite3.Error as exc:
            raise self._not_writable(exc) from exc

    def _not_writable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"SQLite store at {self.path} is not writable: {exc}")

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one IMMEDIATE transaction on the worker thread (the write lock is
        taken up front, so ``busy_timeout`` covers it)."""
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _query(self, sql: str, params: Sequence[Any]) -> builtins.list[Any]:
        conn = self._conn
        assert conn is not None
        return conn.execute(sql, params).fetchall()

    # -- deferred writes ---------------------------------------------------------------------
    def _pending_size(self) -> int:
        return len(self._pending_records) + self._pending_event_count

    async def _make_room(self, needed: int = 1) -> None:
        """Backpressure: while the database works a full buffer waits for the flusher to drain
        it; during a failure streak it refuses instead, so memory stays bounded by
        ``max_pending``. Waiters share the flusher's one transaction: each starting its own
        flush queued them behind one another (seconds of p99 under load)."""
        needed = min(needed, self._max_pending)  # a bigger batch goes in once the buffer is empty
        while self._pending_size() + needed > self._max_pending:
            if self._failures:
                raise StoreUnavailable(
                    f"SQLite store at {self.path} is not writable and {self._pending_size()}"
                    " rows are waiting to be written"
                )
            if self._flusher is None or self._flusher.done():
                await self.flush()
                continue
            drained = self._drained
            self._dirty.set()
            self._full.set()
            await drained.wait()

    def _wrote(self) -> None:
        self._dirty.set()
        if self._pending_size() >= self._flush_threshold and not self._failures:
            self._full.set()

    async def save(self, record: ExecutionRecord, *, durable: bool = False) -> None:
        pending = self._pending_records
        if record.id not in pending and self._pending_size() >= self._max_pending:
            await self._make_room()
        self._pending_records[record.id] = record.copy()
        self._wrote()
        if durable:
            await self.flush()

    async def add_events(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        events = _newer(events, self._buffered_events(execution_id))
        if not events:
            return
        if self._pending_size() + len(events) > self._max_pending:
            await self._make_room(len(events))
        buffered = self._pending_events.get(execution_id)
        if buffered is None:
            self._pending_events[execution_id] = list(events)
        else:
            buffered.extend(events)
        self._pending_event_count += len(events)
        self._wrote()

    async def flush(self) -> None:
        await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            self._dirty.clear()
            self._full.clear()
            if not self._pending_records and not self._pending_events:
                self._wake_waiters()
                return
            records, events = self._pending_records, self._pending_events
            self._pending_records, self._pending_events = {}, {}
            self._pending_event_count = 0
            self._inflight_records, self._inflight_events = records, events
            self._wake_waiters()  # the buffer is empty again (the batch is in flight)
            try:
                await self._call(self._write_batch, builtins.list(records.values()), events)
            except BaseException as exc:
                self._restore(records, events)
                if isinstance(exc, sqlite3.Error):
                    self._flush_failed(exc)
                    self._wake_waiters()
                    raise self._not_writable(exc) from exc
                raise
            finally:
                self._inflight_records, self._inflight_events = {}, {}
            if self._failures:
                logger.info(
                    "SQLite store at %s is writable again after %d failed flushes",
                    self.path,
                    self._failures,
                )
                self._failures = 0

    def _wake_waiters(self) -> None:
        drained, self._drained = self._drained, asyncio.Event()
        drained.set()

    def _restore(
        self,
        records: dict[str, ExecutionRecord],
        events: dict[str, builtins.list[ExecutionEvent]],
    ) -> None:
        """Put an unwritten batch back under whatever arrived meanwhile (newer records win)."""
        records.update(self._pending_records)
        for execution_id, later in self._pending_events.items():
            events.setdefault(execution_id, []).extend(later)
        self._pending_records, self._pending_events = records, events
        self._pending_event_count = sum(len(v) for v in events.values())
        self._dirty.set()

    def _flush_failed(self, exc: sqlite3.Error) -> None:
        if not self._failures:
            logger.warning(
                "SQLite store at %s is not writable (%s): keeping %d rows in memory and retrying",
                self.path,
                exc,
                self._pending_size(),
            )
        self._failures += 1

    def _write_batch(
        self,
        records: builtins.list[ExecutionRecord],
        events: dict[str, builtins.list[ExecutionEvent]],
    ) -> None:
        record_rows = [_record_row(r) for r in records]
        event_rows = [
            (execution_id, e.seq, e.type, _dumps(e.data), e.ts)
            for execution_id, evs in events.items()
            for e in evs
        ]

        def work(conn: sqlite3.Connection) -> None:
            if record_rows:
                conn.executemany(_UPSERT_RECORD, record_rows)
            if event_rows:
                conn.executemany(_INSERT_EVENT, event_rows)

        self._transaction(work)

    async def _run_flusher(self) -> None:
        """Write the buffer ``flush_interval`` after the first deferred write (sooner when it
        reaches the threshold); idle stores do not wake up at all."""
        while not self._closing:
            await self._dirty.wait()
            if not self._full.is_set() and not self._closing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._retry_delay()):
                        await self._full.wait()
            if self._closing:
                return
            try:
                await self._flush()
            except StoreUnavailable:
                pass  # logged once per streak by _flush_failed; the rows stay pending
            except Exception:
                logger.exception("SQLite store at %s: unexpected flush error", self.path)

    def _retry_delay(self) -> float:
        if not self._failures:
            return self._flush_interval
        return min(self._flush_interval * 2 ** min(self._failures, 10), 1.0)

    # -- reads -------------------------------------------------------------------------------
    def _buffered_record(self, execution_id: str) -> ExecutionRecord | None:
        record = self._pending_records.get(execution_id)
        if record is None:
            record = self._inflight_records.get(execution_id)
        return record

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        record = self._buffered_record(execution_id)
        if record is not None:
            return record.copy()
        rows = await self._read(
            self._query, f"SELECT {_RECORD_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        )
        return _row_record(rows[0]) if rows else None

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ExecutionRecord], str | None]:
        _check_list_args(status, limit)
        after = None if cursor is None else decode_cursor(cursor)
        buffered = {**self._inflight_records, **self._pending_records}
        where, params = _list_filter(workflow, status, after)
        # Buffered records may replace (and so disqualify) some fetched rows: over-fetch by as many.
        sql = (
            f"SELECT {_RECORD_COLUMNS} FROM executions{where}"
            " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        rows = await self._read(self._query, sql, [*params, limit + 1 + len(buffered)])
        candidates = [r for r in map(_row_record, rows) if r.id not in buffered]
        candidates.extend(
            r.copy() for r in buffered.values() if _matches(r, workflow, status, after)
        )
        return _page(candidates, limit)

    def _buffered_events(self, execution_id: str) -> builtins.list[ExecutionEvent]:
        inflight = self._inflight_events.get(execution_id)
        pending = self._pending_events.get(execution_id)
        if inflight is None:
            return pending or []
        return inflight + pending if pending else inflight

    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        buffered = self._buffered_events(execution_id)
        if buffered and buffered[0].seq <= after_seq + 1:
            return _events_after(buffered, after_seq)  # all requested events are still buffered
        rows = await self._read(
            self._query,
            "SELECT seq, type, data, ts FROM execution_events"
            " WHERE execution_id = ? AND seq > ? ORDER BY seq",
            (execution_id, after_seq),
        )
        stored = [ExecutionEvent(seq, kind, orjson.loads(data), ts) for seq, kind, data, ts in rows]
        # A flush may have landed between taking the buffer and reading: skip what the DB has.
        last = stored[-1].seq if stored else after_seq
        stored.extend(e for e in buffered if e.seq > last)
        return stored

    # -- maintenance ---------------------------------------------------------------------------
    async def mark_interrupted(self) -> int:
        await self.flush()
        error = _dumps(INTERRUPTED_ERROR)
        now = self._clock()

        def work(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE executions SET status = 'interrupted', finished_at = ?, error = ?"
                " WHERE status IN ('queued', 'running')",
                (now, error),
            )
            return cur.rowcount

        return await self._write(self._transaction, work)

    async def purge(self, *, max_age: float | None = None, max_count: int | None = None) -> int:
        await self.flush()
        cutoff = None if max_age is None else self._clock() - max_age
        now = self._clock()
        return await self._write(
            self._transaction, lambda conn: _purge(conn, cutoff, max_count, now)
        )

    # -- idempotency ---------------------------------------------------------------------------
    async def get_idempotency(self, key: str) -> IdempotencyEntry | None:
        rows = await self._read(
            self._query,
            "SELECT key, request_hash, execution_id, status, body, expires_at"
            " FROM idempotency_keys WHERE key = ? AND expires_at > ?",
            (key, self._clock()),
        )
        if not rows:
            return None
        key, request_hash, execution_id, status, body, expires_at = rows[0]
        return IdempotencyEntry(key, request_hash, execution_id, status, bytes(body), expires_at)

    async def put_idempotency(self, entry: IdempotencyEntry) -> bool:
        params = (
            entry.key,
            entry.request_hash,
            entry.execution_id,
            entry.status,
            entry.body,
            entry.expires_at,
            self._clock(),
        )

        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(_PUT_IDEMPOTENCY, params).rowcount > 0

        return await self._write(self._transaction, work)

    # -- health --------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._write(self._probe_write)
        if self._failures:
            self._full.set()  # writable again: retry the backlog now rather than after a backoff

    def _probe_write(self) -> None:
        """Take the write lock, write a row and roll back: proves writability, changes nothing."""
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "UPDATE nexus_schema SET version = version WHERE component = ?", (_COMPONENT,)
            )
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _list_filter(
    workflow: str | None, status: str | None, after: _SortKey | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if workflow is not None:
        clauses.append("workflow = ?")
        params.append(workflow)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if after is not None:
        clauses.append("(created_at, id) < (?, ?)")
        params.extend(after)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _purge(
    conn: sqlite3.Connection, cutoff: float | None, max_count: int | None, now: float
) -> int:
    doomed: set[str] = set()
    if cutoff is not None:
        rows = conn.execute(
            "SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?",
            (cutoff,),
        )
        doomed.update(row[0] for row in rows)
    if max_count is not None:
        rows = conn.execute(
            "SELECT id, status FROM executions ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?",
            (max_count,),
        )
        doomed.update(row[0] for row in rows if row[1] in TERMINAL)
    ids = [(execution_id,) for execution_id in doomed]
    conn.executemany("DELETE FROM execution_events WHERE execution_id = ?", ids)
    conn.executemany("DELETE FROM executions WHERE id = ?", ids)
    conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
    return len(ids)
