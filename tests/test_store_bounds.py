"""Memory and disk stay bounded: the memory stores by bytes as well as count, SQLite files shrink
after purges."""

from __future__ import annotations

import logging
import os
import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from nexus_aio.errors import PayloadTooLarge
from nexus_aio.stores.executions import ExecutionEvent, ExecutionRecord, MemoryExecutionStore
from nexus_aio.stores.sessions import MemorySessionStore, Session
from nexus_aio.stores.sqlite_executions import SQLiteExecutionStore
from nexus_aio.stores.sqlite_sessions import SQLiteSessionStore
from nexus_aio.testing import ManualClock, opened
from nexus_aio.testing.contracts import T0

KB = 1024
MB = 1024 * KB


def record(n: int, status: str = "succeeded", size: int = 0) -> ExecutionRecord:
    return ExecutionRecord(
        f"ex-{n:04d}",
        "wf",
        "async",
        status,
        {"text": "x" * size},
        T0 + n,
        result={"n": n} if status == "succeeded" else None,
        finished_at=T0 + n + 1 if status != "running" and status != "queued" else None,
    )


# -- memory executions store ----------------------------------------------------------------------
async def test_memory_execution_store_evicts_oldest_finished_records_beyond_max_bytes() -> None:
    store = MemoryExecutionStore(max_bytes=1 * MB)
    for n in range(40):
        await store.save(record(n, size=100 * KB))
    assert store.size_bytes <= 1 * MB
    kept = [r.id for r in (await store.list(limit=100))[0]]
    assert 5 <= len(kept) <= 10
    assert kept == [f"ex-{n:04d}" for n in range(39, 39 - len(kept), -1)]  # the newest ones
    assert await store.get("ex-0000") is None


async def test_memory_execution_store_never_evicts_queued_or_running_records() -> None:
    store = MemoryExecutionStore(max_records=3, max_bytes=300 * KB)
    await store.save(record(0, "running", size=100 * KB))
    await store.save(record(1, "queued", size=100 * KB))
    for n in range(2, 10):
        await store.save(record(n, size=100 * KB))
    held = {r.id: r.status for r in (await store.list(limit=100))[0]}
    assert held["ex-0000"] == "running" and held["ex-0001"] == "queued"
    assert "ex-0009" in held  # the record just saved stays too
    assert len(held) == 3


async def test_memory_execution_store_counts_events_and_drops_them_with_their_record() -> None:
    store = MemoryExecutionStore(max_bytes=1 * MB)
    await store.save(record(0))
    chunk = "y" * (10 * KB)
    await store.add_events("ex-0000", [ExecutionEvent(i, "chunk", chunk, T0) for i in range(1, 60)])
    assert store.size_bytes > 590 * KB
    await store.save(record(1, "running"))
    await store.add_events("ex-0001", [ExecutionEvent(i, "chunk", chunk, T0) for i in range(1, 60)])
    assert store.size_bytes <= 1 * MB
    assert await store.get("ex-0000") is None and await store.events("ex-0000") == []
    assert len(await store.events("ex-0001")) == 59


async def test_memory_execution_store_keeps_json_not_the_callers_objects() -> None:
    store = MemoryExecutionStore()
    rec = record(0)
    await store.save(rec)
    rec.inputs["text"] = "changed"  # mutating what was saved is not a write
    got = await store.get(rec.id)
    assert got is not None and got.inputs == {"text": ""}
    assert store.size_bytes < 1 * KB


async def test_memory_execution_store_holds_small_records_in_little_memory() -> None:
    """What the store really allocates stays near what it counts: orjson's output keeps its
    whole buffer (4 KiB for a small value) unless copied: 17 KiB for a run with two events."""
    store = MemoryExecutionStore(max_records=2_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(4_000):  # the second half replaces the first (the bound)
            await store.save(record(n))
            await store.add_events(
                f"ex-{n:04d}",
                [ExecutionEvent(1, "start", {}, T0), ExecutionEvent(2, "complete", {"n": n}, T0)],
            )
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2_000 * 2 * KB  # about 1 KiB per run here; 17 KiB before the copy


# -- memory session store -------------------------------------------------------------------------
def session(session_id: str, size: int) -> Session:
    return Session(session_id, {"blob": "z" * size}, T0, T0, T0)


async def test_memory_session_store_evicts_least_recently_saved_beyond_max_bytes() -> None:
    store = MemorySessionStore(max_bytes=1 * MB)
    for n in range(10):
        await store.save(session(f"s{n}", 100 * KB))
    await store.save(session("s0", 100 * KB))  # saved again: now the most recent
    await store.save(session("s10", 100 * KB))
    assert store.size_bytes <= 1 * MB
    assert await store.get("s0") is not None and await store.get("s10") is not None
    assert await store.get("s1") is None and await store.get("s2") is not None
    assert await store.count_active() == 10


async def test_memory_session_store_holds_small_states_in_little_memory() -> None:
    store = MemorySessionStore()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(2_000):
            await store.save(session(f"s-{n}", 10))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2_000 * 2 * KB  # orjson's output as it is kept 4 KiB per state


async def test_memory_session_store_refuses_a_state_larger_than_the_whole_bound() -> None:
    store = MemorySessionStore(max_bytes=64 * KB)
    await store.save(session("small", 1 * KB))
    with pytest.raises(PayloadTooLarge) as info:
        await store.save(session("huge", 100 * KB))
    assert info.value.status == 413
    assert await store.get("small") is not None and await store.get("huge") is None


async def test_memory_session_store_at_max_sessions_makes_room_from_expired_ones() -> None:
    clock = ManualClock()
    store = MemorySessionStore(ttl=10, clock=clock, max_sessions=2)
    for session_id in ("a", "b"):
        await store.check_capacity()
        await store.save(session(session_id, 1))
    clock.advance(11)  # both expired, not yet purged
    await store.check_capacity()
    assert await store.count_active() == 0


# -- SQLite files shrink after purges -------------------------------------------------------------
def file_bytes(path: Path) -> int:
    """The database and its write-ahead log, as the disk holds them."""
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


async def test_sqlite_file_shrinks_after_an_execution_purge(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    clock = ManualClock()
    async with opened(SQLiteExecutionStore(str(path), clock=clock)) as store:
        for n in range(100):
            await store.save(record(n, size=50 * KB))
            await store.add_events(f"ex-{n:04d}", [ExecutionEvent(1, "chunk", "c" * KB, T0)])
        await store.flush()
        full = file_bytes(path)
        assert full > 5 * MB
        assert await store.purge(max_count=5) == 95
        after = file_bytes(path)
        assert after < full / 5, (full, after)
        assert len((await store.list(limit=100))[0]) == 5
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL


async def test_sqlite_file_shrinks_after_expired_sessions_are_purged(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    clock = ManualClock()
    async with opened(SQLiteSessionStore(str(path), ttl=60, clock=clock)) as store:
        for n in range(100):
            await store.save(session(f"s{n}", 50 * KB))
        await store.save(session("kept", 1))
        full = file_bytes(path)
        assert full > 5 * MB
        clock.advance(30)
        await store.save(session("kept", 1))
        clock.advance(31)
        assert await store.purge_expired() == 100
        assert file_bytes(path) < full / 5
        assert await store.get("kept") is not None


async def test_sqlite_file_made_without_incremental_vacuum_still_works_and_says_how_to_switch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE legacy (x)")
    conn.close()
    with caplog.at_level(logging.INFO, logger="nexus_aio.stores"):
        async with opened(SQLiteExecutionStore(str(path))) as store:
            await store.save(record(1), durable=True)
            assert await store.purge(max_count=0) == 1
    assert "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;" in caplog.text
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
