"""Execution stores: the contract (``nexus_aio.testing``) on the memory and SQLite stores, then
what only one of them does: the memory store's bound, SQLite durability and failure modes.

Failure simulation must work as root (CI containers), where ``chmod`` stops nothing. Two mechanisms
really fail for root: another connection holding an EXCLUSIVE transaction (SQLite locks are not
permission checks, so our writes get SQLITE_BUSY after ``busy_timeout``; releasing the lock is a
real recovery), and opening the database through a ``file:...?mode=ro`` URI (SQLite itself
refuses writes with SQLITE_READONLY).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from nexus_aio.errors import StoreUnavailable
from nexus_aio.stores.executions import (
    ExecutionEvent,
    ExecutionRecord,
    ExecutionStore,
    IdempotencyEntry,
    MemoryExecutionStore,
)
from nexus_aio.stores.sqlite_execution_sql import read_events
from nexus_aio.stores.sqlite_executions import SQLiteExecutionStore
from nexus_aio.testing import ExecutionStoreContract, ManualClock, opened

T0 = 1_700_000_000.0


def record(
    n: int,
    *,
    workflow: str = "wf",
    status: str = "succeeded",
    created_at: float | None = None,
    finished_at: float | None = None,
) -> ExecutionRecord:
    created = T0 + n if created_at is None else created_at
    return ExecutionRecord(
        id=f"ex-{n:04d}",
        workflow=workflow,
        mode="sync",
        status=status,
        inputs={"n": n},
        created_at=created,
        result={"double": 2 * n} if status == "succeeded" else None,
        finished_at=finished_at,
    )


def events(*types: str, start: int = 1) -> list[ExecutionEvent]:
    return [ExecutionEvent(start + i, t, {"i": start + i}, T0 + i) for i, t in enumerate(types)]


def sqlite_store(
    path: Path | str, clock: ManualClock | None = None, **kw: float
) -> SQLiteExecutionStore:
    kw.setdefault("flush_interval", 3600.0)  # tests flush explicitly unless they test the timer
    kw.setdefault("busy_timeout", 0.05)
    return SQLiteExecutionStore(str(path), clock=clock or ManualClock(), **kw)  # type: ignore[arg-type]


def db_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with a separate connection: what is really committed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def db_events(path: Path, execution_id: str) -> list[ExecutionEvent]:
    """The committed events of one execution (event rows and a log kept in its record's row)."""
    conn = sqlite3.connect(path)
    try:
        return read_events(conn, execution_id, 0)
    finally:
        conn.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nexus.db"  # the parent does not exist yet


@pytest.fixture
async def sqlite(clock: ManualClock, db_path: Path) -> AsyncIterator[SQLiteExecutionStore]:
    s = sqlite_store(db_path, clock)
    await s.open()
    yield s
    await s.close()


# -- the contract, on both stores ------------------------------------------------------------
class TestMemoryExecutionStore(ExecutionStoreContract):
    @pytest.fixture
    async def store(self, clock: ManualClock) -> AsyncIterator[ExecutionStore]:
        async with opened(MemoryExecutionStore(clock=clock)) as store:
            yield store


class TestSQLiteExecutionStore(ExecutionStoreContract):
    @pytest.fixture
    async def store(self, clock: ManualClock, db_path: Path) -> AsyncIterator[ExecutionStore]:
        async with opened(sqlite_store(db_path, clock)) as store:
            yield store


class TestSQLiteExecutionStoreFlushingOnItsOwn(ExecutionStoreContract):
    """The same contract while the background flusher writes as it would in production."""

    @pytest.fixture
    async def store(self, clock: ManualClock, db_path: Path) -> AsyncIterator[ExecutionStore]:
        async with opened(sqlite_store(db_path, clock, flush_interval=0.001)) as store:
            yield store


def test_to_dict_renders_iso_times_and_hides_unfinished_result() -> None:
    rec = ExecutionRecord(
        "ex-1", "wf", "async", "running", {"x": 1}, 1705314600.25, result={"partial": 1}
    )
    data = rec.to_dict()
    assert data["id"] == data["workflow_id"] == "ex-1"
    assert data["name"] == "wf"
    assert data["created_at"] == "2024-01-15T10:30:00.250Z"
    assert data["started_at"] is None and data["finished_at"] is None
    assert "result" not in data and "error" not in data
    assert "actor" not in data
    rec.status, rec.finished_at = "succeeded", 1705314601.0
    data = rec.to_dict()
    assert data["result"] == {"partial": 1}
    assert data["finished_at"] == "2024-01-15T10:30:01.000Z"
    rec.status, rec.error = "failed", {"type": "X", "message": "m", "details": {}}
    data = rec.to_dict()
    assert "result" not in data
    assert data["error"]["type"] == "X"


async def test_memory_store_drops_oldest_beyond_max_records() -> None:
    s = MemoryExecutionStore(max_records=3)
    for n in range(5):
        await s.save(record(n))
        await s.add_events(f"ex-{n:04d}", events("start"))
    assert [r.id for r in (await s.list())[0]] == ["ex-0004", "ex-0003", "ex-0002"]
    assert await s.events("ex-0000") == []


# -- SQLite: deferred writes, durability, restart ------------------------------------------------
async def test_sqlite_deferred_writes_are_readable_before_flush(
    sqlite: SQLiteExecutionStore, db_path: Path
) -> None:
    await sqlite.save(record(1, status="running"))
    await sqlite.add_events("ex-0001", events("start", "chunk"))
    assert db_rows(db_path, "SELECT id FROM executions") == []  # nothing committed yet
    assert (await sqlite.get("ex-0001")) == record(1, status="running")
    assert [e.seq for e in await sqlite.events("ex-0001", after_seq=1)] == [2]
    await sqlite.flush()
    assert db_rows(db_path, "SELECT id, status FROM executions") == [("ex-0001", "running")]
    assert db_rows(db_path, "SELECT seq FROM execution_events") == [(1,), (2,)]


async def test_sqlite_pending_record_wins_over_db_row_in_get_and_list(
    sqlite: SQLiteExecutionStore,
) -> None:
    rec = record(1, status="running")
    await sqlite.save(rec, durable=True)
    await sqlite.save(record(2, status="running"), durable=True)
    rec.status = "succeeded"
    await sqlite.save(rec)  # deferred: the DB row still says running
    assert (await sqlite.get(rec.id)).status == "succeeded"  # type: ignore[union-attr]
    assert [r.id for r in (await sqlite.list(status="running", limit=1))[0]] == ["ex-0002"]
    page, cursor = await sqlite.list(status="running", limit=1)
    assert cursor is None and [r.id for r in page] == ["ex-0002"]
    assert [r.id for r in (await sqlite.list(status="succeeded"))[0]] == ["ex-0001"]


async def test_sqlite_events_merge_db_rows_with_buffered_ones(
    sqlite: SQLiteExecutionStore,
) -> None:
    await sqlite.add_events("ex-1", events("start", "chunk"))
    await sqlite.flush()
    await sqlite.add_events("ex-1", events("chunk", "complete", start=3))
    assert [e.seq for e in await sqlite.events("ex-1")] == [1, 2, 3, 4]
    assert [e.seq for e in await sqlite.events("ex-1", after_seq=1)] == [2, 3, 4]
    assert [e.seq for e in await sqlite.events("ex-1", after_seq=3)] == [4]


async def test_sqlite_events_overlapping_the_db_are_not_repeated(
    sqlite: SQLiteExecutionStore,
) -> None:
    await sqlite.add_events("ex-1", events("start", "chunk", "chunk"))
    await sqlite.flush()
    await sqlite.add_events("ex-1", events("chunk", "chunk", "complete", start=2))  # 2, 3 again
    assert [e.seq for e in await sqlite.events("ex-1")] == [1, 2, 3, 4]
    await sqlite.flush()
    assert [e.seq for e in await sqlite.events("ex-1")] == [1, 2, 3, 4]


async def test_sqlite_durable_save_is_committed_on_return(
    sqlite: SQLiteExecutionStore, db_path: Path
) -> None:
    await sqlite.save(record(1, status="queued"), durable=True)
    assert db_rows(db_path, "SELECT id, status FROM executions") == [("ex-0001", "queued")]


async def test_sqlite_concurrent_durable_saves_are_each_committed_in_shared_transactions(
    sqlite: SQLiteExecutionStore, db_path: Path
) -> None:
    async def save(n: int) -> list[tuple[object, ...]]:
        await sqlite.save(record(n, status="queued"), durable=True)
        return db_rows(db_path, f"SELECT status FROM executions WHERE id = 'ex-{n:04d}'")

    seen = await asyncio.gather(*(save(n) for n in range(1, 51)))
    assert seen == [[("queued",)]] * 50  # each caller finds its row committed on return
    assert sqlite._taken < 25  # white-box: waiting callers joined others' transactions


async def test_sqlite_a_finished_runs_whole_log_is_kept_in_its_row_and_reads_the_same(
    sqlite: SQLiteExecutionStore, db_path: Path
) -> None:
    log = [
        ExecutionEvent(1, "start", {"workflow": "wf"}, T0),
        ExecutionEvent(2, "chunk", {"odd": {1}, "big": 2**70}, T0 + 0.125),  # str() fallbacks
        ExecutionEvent(3, "complete", {"result": "ok"}, T0 + 1 / 3),
    ]
    await sqlite.add_events("ex-0001", log)
    await sqlite.save(record(1))
    await sqlite.flush()
    assert db_rows(db_path, "SELECT count(*) FROM execution_events") == [(0,)]  # in the run's row
    reread = await sqlite.events("ex-0001")
    assert [(e.seq, e.type, e.ts) for e in reread] == [(e.seq, e.type, e.ts) for e in log]
    assert reread[1].data == {"odd": "{1}", "big": 2**70}
    assert [e.seq for e in await sqlite.events("ex-0001", after_seq=2)] == [3]
    # A later save without events keeps the log; later events are rows, read in order with it.
    await sqlite.save(record(1))
    await sqlite.add_events("ex-0001", events("note", start=4))
    await sqlite.flush()
    assert [e.seq for e in await sqlite.events("ex-0001")] == [1, 2, 3, 4]
    assert [e.seq for e in await sqlite.events("ex-0001", after_seq=3)] == [4]
    # A run still going keeps one row per event, as before.
    await sqlite.save(record(2, status="running"))
    await sqlite.add_events("ex-0002", events("start"))
    await sqlite.flush()
    assert db_rows(db_path, "SELECT execution_id, seq FROM execution_events ORDER BY 1, 2") == [
        ("ex-0001", 4),
        ("ex-0002", 1),
    ]


async def test_sqlite_fields_a_record_does_not_have_are_stored_as_null(
    sqlite: SQLiteExecutionStore, db_path: Path
) -> None:
    """Other readers of the file (sqlite3, backups, ``WHERE actor IS NULL``) see SQL NULL for an
    absent field, whatever the store binds to write it; present fields keep their types."""
    bare = ExecutionRecord("ex-bare", "wf", "async", "queued", {}, T0)
    full = ExecutionRecord(
        "ex-full", "wf", "sync", "failed", {"n": 1}, T0, [1], {"type": "X"}, T0 + 1, T0 + 2,
        "sess", "req", "alice", 2, "trace", "schedule", "sch-1", "host:1",
    )  # fmt: skip
    await sqlite.save(bare)
    await sqlite.add_events("ex-full", events("start", "error"))
    await sqlite.save(full)
    await sqlite.flush()
    columns = (
        "result, error, started_at, finished_at, session_id, request_id, actor, trace_id,"
        " trigger, schedule_id, owner, events"
    )
    types = ", ".join(f"typeof({c.strip()})" for c in columns.split(","))
    assert db_rows(db_path, f"SELECT id, {types} FROM executions ORDER BY id") == [
        ("ex-bare", *["null"] * 12),
        ("ex-full", "text", "text", "real", "real", *["text"] * 8),
    ]
    assert db_rows(db_path, "SELECT count(*) FROM executions WHERE actor IS NULL") == [(1,)]
    assert await sqlite.get("ex-bare") == bare
    assert await sqlite.get("ex-full") == full


@pytest.mark.parametrize("runs", [1, 9, 10, 99, 100, 347])
async def test_sqlite_one_flush_of_any_size_writes_every_record_and_event(
    sqlite: SQLiteExecutionStore, db_path: Path, runs: int
) -> None:
    """A batch goes in statements of many rows (full ones, then tens, then units)."""
    for n in range(runs):
        await sqlite.add_events(f"ex-{n:04d}", events("start", "complete"))  # kept in the row
        await sqlite.add_events(f"live-{n:04d}", events("start"))  # rows of their own
        await sqlite.save(record(n))
        await sqlite.save(dataclasses.replace(record(n, status="running"), id=f"live-{n:04d}"))
    await sqlite.flush()
    assert db_rows(db_path, "SELECT count(*) FROM executions") == [(2 * runs,)]
    assert db_rows(db_path, "SELECT count(*) FROM execution_events") == [(runs,)]
    for n in (0, runs // 2, runs - 1):
        assert await sqlite.get(f"ex-{n:04d}") == record(n)
        assert [e.type for e in db_events(db_path, f"ex-{n:04d}")] == ["start", "complete"]
        assert [e.type for e in db_events(db_path, f"live-{n:04d}")] == ["start"]


def spy_on_flushes(store: SQLiteExecutionStore) -> asyncio.Event:
    """An event set after each flush the store runs (white-box: wraps the private method)."""
    flushed = asyncio.Event()
    original = store._flush

    async def flush_and_signal() -> None:
        await original()
        flushed.set()

    store._flush = flush_and_signal  # type: ignore[method-assign]
    return flushed


@pytest.mark.parametrize(
    ("flush_interval", "max_pending", "saves"),
    [(0.01, 10_000, 1), (3600.0, 8, 2)],  # the timer; the size threshold (max_pending / 4)
    ids=["timer", "threshold"],
)
async def test_sqlite_background_task_flushes_without_being_asked(
    clock: ManualClock, db_path: Path, flush_interval: float, max_pending: int, saves: int
) -> None:
    s = sqlite_store(db_path, clock, flush_interval=flush_interval, max_pending=max_pending)
    await s.open()
    flushed = spy_on_flushes(s)
    try:
        for n in range(saves):
            await s.save(record(n))
        async with asyncio.timeout(5):
            await flushed.wait()
        assert db_rows(db_path, "SELECT count(*) FROM executions") == [(saves,)]
    finally:
        await s.close()


async def test_sqlite_full_buffer_applies_backpressure_instead_of_failing(
    clock: ManualClock, db_path: Path
) -> None:
    s = sqlite_store(db_path, clock, max_pending=10)
    await s.open()
    try:
        for n in range(50):  # never yields to the flusher: saves must flush inline when full
            await s.save(record(n))
            await s.add_events(f"ex-{n:04d}", events("start", "complete"))
    finally:
        await s.close()
    assert db_rows(db_path, "SELECT count(*) FROM executions") == [(50,)]
    assert [len(db_events(db_path, f"ex-{n:04d}")) for n in range(50)] == [2] * 50


async def test_sqlite_close_flushes_and_a_new_store_sees_everything(
    clock: ManualClock, db_path: Path
) -> None:
    first = sqlite_store(db_path, clock)
    await first.open()
    await first.save(record(1, status="running"))
    await first.save(record(2))
    await first.add_events("ex-0002", events("start", "complete"))
    entry = IdempotencyEntry("k", "h", "ex-0002", 200, b"\x00body", T0 + 60)
    await first.put_idempotency(entry)
    await first.close()

    second = sqlite_store(db_path, clock)
    await second.open()
    try:
        assert await second.get("ex-0002") == record(2)
        assert [e.type for e in await second.events("ex-0002")] == ["start", "complete"]
        assert await second.get_idempotency("k") == entry
        assert await second.mark_interrupted() == 1  # what a restart does
        assert (await second.get("ex-0001")).status == "interrupted"  # type: ignore[union-attr]
    finally:
        await second.close()


async def test_sqlite_stores_unserialisable_results_as_strings(
    clock: ManualClock, db_path: Path
) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "<opaque>"

    s = sqlite_store(db_path, clock)
    await s.open()
    rec = record(1)
    rec.result = {"obj": Opaque(), "big": 2**70, "ints": {1: "a"}}
    await s.save(rec)

    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            return "Hostile()"

    await s.add_events(
        "ex-0001",
        [ExecutionEvent(1, "chunk", Opaque(), T0), ExecutionEvent(2, "chunk", [Hostile()], T0)],
    )
    await s.close()
    s = sqlite_store(db_path, clock)
    await s.open()
    try:
        got = await s.get("ex-0001")
        assert got is not None and got.result == {
            "obj": "<opaque>",
            "big": 2**70,
            "ints": {"1": "a"},
        }
        assert [e.data for e in await s.events("ex-0001")] == ["<opaque>", "[Hostile()]"]
    finally:
        await s.close()


async def test_sqlite_in_memory_database_works(clock: ManualClock) -> None:
    s = sqlite_store(":memory:", clock)
    await s.open()
    try:
        await s.save(record(1), durable=True)
        await s.add_events("ex-0001", events("start"))
        await s.flush()
        assert (await s.get("ex-0001")) == record(1)
        assert len(await s.events("ex-0001")) == 1
        await s.ping()
    finally:
        await s.close()


async def test_sqlite_open_fails_clearly_when_the_directory_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    s = sqlite_store(blocker / "nexus.db")  # a regular file as parent stops root too
    with pytest.raises(StoreUnavailable, match=r"SQLite store at .*nexus\.db cannot be opened"):
        await s.open()


async def test_sqlite_open_fails_clearly_when_the_directory_is_not_writable(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores directory modes, so the permission answer is simulated here.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == db_path.parent else real_access(p, mode)
    )
    with pytest.raises(StoreUnavailable, match=r"directory .*state is not writable"):
        await sqlite_store(db_path).open()


async def test_sqlite_open_refuses_a_newer_schema(db_path: Path) -> None:
    s = sqlite_store(db_path)
    await s.open()
    await s.close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE nexus_schema SET version = 99 WHERE component = 'executions'")
    conn.close()
    with pytest.raises(StoreUnavailable, match="schema version 99"):
        await sqlite_store(db_path).open()


# -- SQLite: failure and recovery ------------------------------------------------------------------
class Locker:
    """Another connection holding the database's write lock, as a second process would."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.close()  # closing ends the open transaction: idempotent


@pytest.fixture
async def locker(sqlite: SQLiteExecutionStore, db_path: Path) -> AsyncIterator[Locker]:
    lock = Locker(db_path)
    yield lock
    lock.release()


async def test_sqlite_locked_db_keeps_rows_warns_once_and_recovers(
    sqlite: SQLiteExecutionStore,
    locker: Locker,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="nexus_aio.stores.executions")
    await sqlite.save(record(1))
    await sqlite.add_events("ex-0001", events("start"))
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="is not writable: database is locked"):
            await sqlite.flush()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not writable" in warnings[0].getMessage()
    # The process keeps going: reads still work and see the unwritten rows.
    assert await sqlite.get("ex-0001") == record(1)
    assert [e.seq for e in await sqlite.events("ex-0001")] == [1]
    await sqlite.save(record(2))

    locker.release()
    await sqlite.flush()
    assert db_rows(db_path, "SELECT id FROM executions ORDER BY id") == [("ex-0001",), ("ex-0002",)]
    assert [e.seq for e in db_events(db_path, "ex-0001")] == [1]
    assert any("writable again" in r.getMessage() for r in caplog.records)
    await sqlite.ping()


async def test_sqlite_locked_db_fails_ping_and_durable_save(
    sqlite: SQLiteExecutionStore, locker: Locker, db_path: Path
) -> None:
    with pytest.raises(StoreUnavailable) as info:
        await sqlite.ping()
    assert info.value.message.startswith(f"SQLite store at {db_path} is not writable: ")
    assert info.value.status == 503
    with pytest.raises(StoreUnavailable):
        await sqlite.save(record(1, status="queued"), durable=True)
    locker.release()
    await sqlite.ping()
    await sqlite.flush()  # the refused durable write was kept and lands once possible
    assert db_rows(db_path, "SELECT status FROM executions") == [("queued",)]


async def test_sqlite_failure_streak_bounds_memory_with_max_pending(
    clock: ManualClock, db_path: Path
) -> None:
    s = sqlite_store(db_path, clock, max_pending=4)
    await s.open()
    lock = Locker(db_path)
    try:
        for n in range(5):
            await s.save(record(n))  # the 5th waits until the flusher takes the batch
        with pytest.raises(StoreUnavailable):
            await s.flush()  # the write fails: the streak starts, the rows stay pending
        with pytest.raises(StoreUnavailable, match="rows are waiting"):
            await s.save(record(5))  # during a streak: refused at once
        with pytest.raises(StoreUnavailable):
            await s.add_events("ex-0000", events("start"))
        await s.save(record(1, status="failed"))  # replacing a buffered record needs no room
        assert (await s.get("ex-0001")).status == "failed"  # type: ignore[union-attr]
    finally:
        lock.release()
    await s.flush()  # what the background task does on its next retry
    await s.save(record(5))  # room again
    await s.close()
    assert db_rows(db_path, "SELECT count(*) FROM executions") == [(6,)]


async def test_sqlite_read_only_database_fails_ping_but_serves_reads(
    clock: ManualClock, db_path: Path
) -> None:
    writer = sqlite_store(db_path, clock)
    await writer.open()
    await writer.save(record(1), durable=True)
    await writer.close()
    reader = sqlite_store(f"file:{db_path}?mode=ro", clock)
    await reader.open()
    try:
        with pytest.raises(StoreUnavailable, match="not writable: attempt to write a readonly"):
            await reader.ping()
        with pytest.raises(StoreUnavailable):
            await reader.save(record(2), durable=True)
        assert await reader.get("ex-0001") == record(1)
        assert await reader.get("ex-0002") == record(2)  # kept in memory, still readable
    finally:
        await reader.close()


@pytest.mark.parametrize("operation", ["mark_interrupted", "purge", "put_idempotency"])
async def test_sqlite_direct_writes_raise_store_unavailable_when_locked(
    sqlite: SQLiteExecutionStore, locker: Locker, operation: str
) -> None:
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "mark_interrupted": sqlite.mark_interrupted,
        "purge": lambda: sqlite.purge(max_age=1),
        "put_idempotency": lambda: sqlite.put_idempotency(
            IdempotencyEntry("k", "h", "ex", 200, b"", T0 + 9)
        ),
    }
    with pytest.raises(StoreUnavailable, match="not writable"):
        await calls[operation]()
