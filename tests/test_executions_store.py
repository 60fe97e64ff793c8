"""Execution stores: the shared contract on both stores, then SQLite durability and failure modes.

Failure simulation must work as root (CI containers), where ``chmod`` stops nothing. Two mechanisms
really fail for root: another connection holding an EXCLUSIVE transaction (SQLite locks are not
permission checks, so our writes get SQLITE_BUSY after ``busy_timeout``; releasing the lock is a
real recovery), and opening the database through a ``file:...?mode=ro`` URI (SQLite itself
refuses writes with SQLITE_READONLY).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from nexus_aio.errors import StoreUnavailable, ValidationError
from nexus_aio.stores.executions import (
    ExecutionEvent,
    ExecutionRecord,
    ExecutionStore,
    IdempotencyEntry,
    MemoryExecutionStore,
    encode_cursor,
)
from nexus_aio.stores.sqlite_executions import SQLiteExecutionStore

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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
    path: Path | str, clock: FakeClock | None = None, **kw: float
) -> SQLiteExecutionStore:
    kw.setdefault("flush_interval", 3600.0)  # tests flush explicitly unless they test the timer
    kw.setdefault("busy_timeout", 0.05)
    return SQLiteExecutionStore(str(path), clock=clock or FakeClock(), **kw)  # type: ignore[arg-type]


def db_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with a separate connection: what is really committed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nexus.db"  # the parent does not exist yet


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, clock: FakeClock, db_path: Path
) -> AsyncIterator[ExecutionStore]:
    s: ExecutionStore
    if request.param == "memory":
        s = MemoryExecutionStore(clock=clock)
    else:
        s = sqlite_store(db_path, clock)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def sqlite(clock: FakeClock, db_path: Path) -> AsyncIterator[SQLiteExecutionStore]:
    s = sqlite_store(db_path, clock)
    await s.open()
    yield s
    await s.close()


async def all_pages(store: ExecutionStore, limit: int, **filters: str) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor, pages = None, 0
    while True:
        page, cursor = await store.list(limit=limit, cursor=cursor, **filters)
        ids += [r.id for r in page]
        pages += 1
        if cursor is None:
            return ids, pages


# -- the contract, on both stores ------------------------------------------------------------
async def test_save_get_roundtrip_keeps_every_field(store: ExecutionStore) -> None:
    original = ExecutionRecord(
        id="ex-1",
        workflow="summarise",
        mode="async",
        status="failed",
        inputs={"text": "héllo", "nested": {"list": [1, 2.5, None, True]}},
        created_at=T0 + 0.125,
        result=None,
        error={"type": "WorkflowExecutionError", "message": "boom", "details": {"node": "a"}},
        started_at=T0 + 1,
        finished_at=T0 + 2.5,
        session_id="sess-1",
        request_id="req-1",
        actor="alice",
    )
    await store.save(original)
    assert await store.get("ex-1") == original
    assert await store.get("missing") is None


async def test_save_keeps_a_snapshot_not_the_live_object(store: ExecutionStore) -> None:
    rec = record(1, status="running")
    await store.save(rec)
    rec.status = "succeeded"
    assert (await store.get(rec.id)).status == "running"  # type: ignore[union-attr]
    fetched = await store.get(rec.id)
    assert fetched is not None
    fetched.status = "failed"
    assert (await store.get(rec.id)).status == "running"  # type: ignore[union-attr]


async def test_save_upserts_latest_state(store: ExecutionStore) -> None:
    rec = record(1, status="running")
    await store.save(rec, durable=True)
    rec.status, rec.result, rec.finished_at = "succeeded", {"ok": 1}, T0 + 9
    await store.save(rec)
    got = await store.get(rec.id)
    assert got is not None
    assert (got.status, got.result, got.finished_at) == ("succeeded", {"ok": 1}, T0 + 9)
    page, _ = await store.list()
    assert [r.id for r in page] == [rec.id]


async def test_list_is_newest_first_with_filters(store: ExecutionStore) -> None:
    await store.save(record(1, workflow="a", status="succeeded"))
    await store.save(record(3, workflow="b", status="failed"))
    await store.save(record(2, workflow="a", status="failed"))
    page, cursor = await store.list()
    assert [r.id for r in page] == ["ex-0003", "ex-0002", "ex-0001"]
    assert cursor is None
    assert [r.id for r in (await store.list(workflow="a"))[0]] == ["ex-0002", "ex-0001"]
    assert [r.id for r in (await store.list(status="failed"))[0]] == ["ex-0003", "ex-0002"]
    assert [r.id for r in (await store.list(workflow="a", status="failed"))[0]] == ["ex-0002"]
    assert (await store.list(workflow="nope"))[0] == []


async def test_list_pages_have_no_duplicates_and_no_gaps(store: ExecutionStore) -> None:
    # Ties on created_at must still page cleanly: id breaks them.
    for n in range(23):
        await store.save(record(n, created_at=T0 + n // 4, workflow="even" if n % 2 else "odd"))
    ids, pages = await all_pages(store, limit=5)
    expected = sorted((r for r in range(23)), key=lambda n: (n // 4, f"ex-{n:04d}"), reverse=True)
    assert ids == [f"ex-{n:04d}" for n in expected]
    assert pages == 5
    even_ids, _ = await all_pages(store, limit=3, workflow="even")
    assert even_ids == [f"ex-{n:04d}" for n in expected if n % 2]


async def test_list_exact_multiple_of_limit_ends_without_cursor(store: ExecutionStore) -> None:
    for n in range(4):
        await store.save(record(n))
    page, cursor = await store.list(limit=2)
    assert cursor is not None
    page, cursor = await store.list(limit=2, cursor=cursor)
    assert [r.id for r in page] == ["ex-0001", "ex-0000"]
    assert cursor is None


@pytest.mark.parametrize(
    "cursor",
    ["not a cursor!", "e30", encode_cursor(1.0, "x")[:-3] + "@@@", "WzEsMiwzXQ", "WyJhIiwiYiJd"],
)
async def test_list_rejects_bad_cursor_as_validation_error(
    store: ExecutionStore, cursor: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await store.list(cursor=cursor)
    assert info.value.details["field"] == "cursor"


async def test_list_rejects_unknown_status_and_bad_limit(store: ExecutionStore) -> None:
    with pytest.raises(ValidationError) as info:
        await store.list(status="exploded")
    assert info.value.details["field"] == "status"
    with pytest.raises(ValidationError):
        await store.list(limit=0)


async def test_events_keep_order_and_honour_after_seq(store: ExecutionStore) -> None:
    await store.add_events("ex-1", events("start", "node_start"))
    await store.add_events("ex-2", events("start"))
    await store.add_events("ex-1", events("chunk", "complete", start=3))
    got = await store.events("ex-1")
    assert [(e.seq, e.type) for e in got] == [
        (1, "start"),
        (2, "node_start"),
        (3, "chunk"),
        (4, "complete"),
    ]
    assert got[2].data == {"i": 3}
    assert [e.seq for e in await store.events("ex-1", after_seq=2)] == [3, 4]
    assert await store.events("ex-1", after_seq=4) == []
    assert await store.events("unknown") == []


async def test_adding_a_whole_log_again_does_not_duplicate(store: ExecutionStore) -> None:
    log = events("start", "chunk")
    await store.add_events("ex-1", log)
    await store.add_events("ex-1", [*log, *events("complete", start=3)])
    assert [e.seq for e in await store.events("ex-1")] == [1, 2, 3]


async def test_mark_interrupted_ends_queued_and_running(
    store: ExecutionStore, clock: FakeClock
) -> None:
    await store.save(record(1, status="queued"))
    await store.save(record(2, status="running"), durable=True)
    await store.save(record(3, status="succeeded", finished_at=T0 + 3))
    clock.now = T0 + 100
    assert await store.mark_interrupted() == 2
    for n in (1, 2):
        got = await store.get(f"ex-{n:04d}")
        assert got is not None
        assert (got.status, got.finished_at) == ("interrupted", T0 + 100)
        assert got.error == {
            "type": "Interrupted",
            "message": "The server stopped before this execution finished",
            "details": {},
        }
    done = await store.get("ex-0003")
    assert done is not None and done.status == "succeeded" and done.error is None
    assert await store.mark_interrupted() == 0


async def test_purge_by_age_deletes_old_finished_records_and_events(
    store: ExecutionStore, clock: FakeClock
) -> None:
    await store.save(record(1, finished_at=T0 + 10))
    await store.save(record(2, finished_at=T0 + 500))
    await store.save(record(3, status="running"))  # unfinished: never purged
    await store.add_events("ex-0001", events("start", "complete"))
    clock.now = T0 + 1000
    assert await store.purge(max_age=600) == 1
    assert await store.get("ex-0001") is None
    assert await store.events("ex-0001") == []
    assert {r.id for r in (await store.list())[0]} == {"ex-0002", "ex-0003"}
    assert await store.purge(max_age=600) == 0


async def test_purge_by_count_keeps_the_newest(store: ExecutionStore) -> None:
    for n in range(6):
        await store.save(record(n, finished_at=T0 + n))
    await store.save(record(-1, status="running", created_at=T0 - 50))  # oldest, but active
    assert await store.purge(max_count=3) == 3
    ids = [r.id for r in (await store.list())[0]]
    assert ids == ["ex-0005", "ex-0004", "ex-0003", "ex--001"]


async def test_idempotency_put_get_and_expiry(store: ExecutionStore, clock: FakeClock) -> None:
    entry = IdempotencyEntry("actor:alice:k1", "hash-1", "ex-1", 200, b'{"ok":true}', T0 + 60)
    assert await store.get_idempotency(entry.key) is None
    assert await store.put_idempotency(entry) is True
    assert await store.get_idempotency(entry.key) == entry
    other = IdempotencyEntry(entry.key, "hash-2", "ex-2", 202, b"{}", T0 + 120)
    assert await store.put_idempotency(other) is False
    assert await store.get_idempotency(entry.key) == entry
    clock.now = T0 + 60
    assert await store.get_idempotency(entry.key) is None
    assert await store.put_idempotency(other) is True
    assert await store.get_idempotency(entry.key) == other


async def test_ping_succeeds_on_a_healthy_store(store: ExecutionStore) -> None:
    await store.ping()


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
    clock: FakeClock, db_path: Path, flush_interval: float, max_pending: int, saves: int
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
    clock: FakeClock, db_path: Path
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
    assert db_rows(db_path, "SELECT count(*) FROM execution_events") == [(100,)]


async def test_sqlite_close_flushes_and_a_new_store_sees_everything(
    clock: FakeClock, db_path: Path
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
    clock: FakeClock, db_path: Path
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


async def test_sqlite_in_memory_database_works(clock: FakeClock) -> None:
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
    assert db_rows(db_path, "SELECT count(*) FROM execution_events") == [(1,)]
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
    clock: FakeClock, db_path: Path
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
    clock: FakeClock, db_path: Path
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
