"""The embedded default executions store: SQLite in WAL mode, with deferred batched writes.

The store sits on the request hot path, so ordinary writes are *deferred*: ``save()`` and
``add_events()`` only touch an in-memory buffer, which a background task writes in one
transaction every ``flush_interval`` seconds (or sooner when it grows). Reads merge that buffer,
so callers never observe the delay. Writes that must survive a crash (async-mode state changes)
pass ``durable=True`` and return only once committed. The SQL itself lives in
``sqlite_execution_sql``; the thread and connection are the database file's shared
:class:`~nexus_aio.stores.sqlite_worker.SQLiteWorker`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from nexus_aio.errors import StoreUnavailable
from nexus_aio.stores import sqlite_execution_sql as sql
from nexus_aio.stores.executions import (
    EVERYONE,
    Everyone,
    ExecutionEvent,
    ExecutionRecord,
    ExecutionStore,
    IdempotencyEntry,
    check_list_args,
    decode_cursor,
    events_after,
    matches,
    newer_events,
    newest_first,
    summarise,
)
from nexus_aio.stores.sqlite_worker import SQLiteHandle, reclaim_free_pages

__all__ = ["SQLiteExecutionStore"]

# The name the executions store has always logged under (operators filter on it).
logger = logging.getLogger("nexus_aio.stores.executions")

_T = TypeVar("_T")


class SQLiteExecutionStore(ExecutionStore):
    """The embedded default: stdlib sqlite3 on the file's worker thread, WAL, deferred writes.

    Deferred rows wait in ``_pending_*``; a flush moves them to ``_inflight_*`` while the worker
    writes them, and back into the buffer if the write fails (every write is an idempotent
    upsert, so retrying is safe). Reads consult pending, then in-flight, then the DB.

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
        self._db = SQLiteHandle(path, "SQLite store", busy_timeout)
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
        # Group commit: every flush that takes the buffer gets the next number; ``_committed`` is
        # the last one written (everything taken before it is written too: a failed batch goes
        # back into the buffer, so the next flush carries it).
        self._taken = 0
        self._committed = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self._db.is_open:
            raise RuntimeError("store is already open")
        # Fresh primitives: a store reopened under another event loop must not reuse old ones.
        self._flush_lock, self._dirty, self._full = asyncio.Lock(), asyncio.Event(), asyncio.Event()
        self._drained = asyncio.Event()
        await self._db.open(sql.create_schema)
        self._closing = False
        self._flusher = asyncio.create_task(self._run_flusher(), name="nexus-sqlite-flusher")

    async def close(self) -> None:
        if not self._db.is_open:
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
        await self._db.close()

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
        events = newer_events(events, self._buffered_events(execution_id))
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
        """Return once everything written before the call is committed. Concurrent callers
        share transactions: one whose rows another caller's flush took and committed while it
        waited for the lock returns without a transaction of its own (group commit)."""
        target = self._taken + 1  # the flush that takes what is buffered now
        async with self._flush_lock:
            if self._committed >= target:
                return
            await self._flush_locked()

    async def _flush(self) -> None:
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        self._dirty.clear()
        self._full.clear()
        if not self._pending_records and not self._pending_events:
            self._wake_waiters()
            return
        records, events = self._pending_records, self._pending_events
        self._pending_records, self._pending_events = {}, {}
        self._pending_event_count = 0
        self._inflight_records, self._inflight_events = records, events
        self._taken += 1
        taken = self._taken
        self._wake_waiters()  # the buffer is empty again (the batch is in flight)
        try:
            await self._db.call(sql.write_batch, builtins.list(records.values()), events)
        except BaseException as exc:
            self._restore(records, events)
            if isinstance(exc, sqlite3.Error):
                self._flush_failed(exc)
                self._wake_waiters()
                raise self._db.not_writable(exc) from exc
            raise
        finally:
            self._inflight_records, self._inflight_events = {}, {}
        self._committed = taken
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
        rows = await self._db.read(
            sql.query, f"SELECT {sql.RECORD_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        )
        return sql.row_record(rows[0]) if rows else None

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
        buffered = {**self._inflight_records, **self._pending_records}
        where, params = sql.list_filter(workflow, status, after, visible_to)
        columns, column_params = sql.summary_columns(max_value_bytes)
        # Buffered records may replace (and so disqualify) some fetched rows: over-fetch by as many.
        select = (
            f"SELECT {columns} FROM executions{where} ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        rows = await self._db.read(
            sql.query, select, [*column_params, *params, limit + 1 + len(buffered)]
        )
        candidates = [r for r in map(sql.summary_record, rows) if r.id not in buffered]
        candidates.extend(
            r for r in buffered.values() if matches(r, workflow, status, after, visible_to)
        )
        page, next_cursor = newest_first(candidates, limit)
        # Only the page's buffered records are measured (and copied: the buffer keeps its own).
        return [summarise(r.copy(), max_value_bytes) for r in page], next_cursor

    def _buffered_events(self, execution_id: str) -> builtins.list[ExecutionEvent]:
        inflight = self._inflight_events.get(execution_id)
        pending = self._pending_events.get(execution_id)
        if inflight is None:
            return pending or []
        return inflight + pending if pending else inflight

    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        buffered = self._buffered_events(execution_id)
        if buffered and buffered[0].seq <= after_seq + 1:
            return events_after(buffered, after_seq)  # all requested events are still buffered
        stored = await self._db.read(sql.read_events, execution_id, after_seq)
        # A flush may have landed between taking the buffer and reading: skip what the DB has.
        last = stored[-1].seq if stored else after_seq
        stored.extend(e for e in buffered if e.seq > last)
        return stored

    # -- maintenance ---------------------------------------------------------------------------
    async def mark_interrupted(self, owner: str | None = None) -> int:
        await self.flush()
        return await self._db.write(sql.mark_interrupted, self._clock(), owner)

    async def purge(self, *, max_age: float | None = None, max_count: int | None = None) -> int:
        await self.flush()
        now = self._clock()
        cutoff = None if max_age is None else now - max_age
        purged = await self._db.write(sql.purge, cutoff, max_count, now)
        await self._db.write(reclaim_free_pages)  # idempotency keys expire too: always look
        return purged

    # -- idempotency ---------------------------------------------------------------------------
    async def get_idempotency(self, key: str) -> IdempotencyEntry | None:
        return await self._db.read(sql.get_idempotency, key, self._clock())

    async def put_idempotency(self, entry: IdempotencyEntry) -> bool:
        return await self._db.write(sql.put_idempotency, entry, self._clock())

    async def settle_idempotency(self, entry: IdempotencyEntry) -> bool:
        return await self._db.write(sql.settle_idempotency, entry)

    async def release_idempotency(self, key: str, execution_id: str) -> bool:
        return await self._db.write(sql.release_idempotency, key, execution_id)

    # -- health --------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._db.write(sql.probe_write)
        if self._failures:
            self._full.set()  # writable again: retry the backlog now rather than after a backoff
