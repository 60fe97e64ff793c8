"""Session stores: the contract (``nexus_aio.testing``) on the memory and SQLite stores, what only
SQLite does (restart, sharing its file and worker, failures), session ids and per-session locks."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from nexus_aio.errors import StoreUnavailable, ValidationError
from nexus_aio.execution.locks import SessionLocks
from nexus_aio.stores.executions import ExecutionRecord
from nexus_aio.stores.sessions import (
    MemorySessionStore,
    Session,
    SessionStore,
    validate_session_id,
)
from nexus_aio.stores.sqlite_executions import SQLiteExecutionStore
from nexus_aio.stores.sqlite_sessions import SQLiteSessionStore
from nexus_aio.testing import ManualClock, SessionExpiryContract, SessionStoreContract, opened

T0 = 1_700_000_000.0
TTL = 100.0


def new_session(session_id: str = "s1", state: Any = None, actor: str | None = None) -> Session:
    return Session(session_id, {"n": 1} if state is None else state, T0, T0, T0 + TTL, actor)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# -- session ids ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["a", "session-123", "user:42.chat_7", "x" * 128])
def test_validate_session_id_accepts_safe_ids(value: str) -> None:
    assert validate_session_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "x" * 129, "has space", "slash/es", "nl\n", "ünicode", 42, None, ["a"]]
)
def test_validate_session_id_rejects_unsafe_ids(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        validate_session_id(value)
    assert info.value.status == 400
    assert info.value.details["field"] == "session_id"


def test_session_to_dict_uses_iso_utc_times() -> None:
    session = Session("s1", {"a": 1}, T0, T0 + 1.5, T0 + 3600, "alice")
    assert session.to_dict() == {
        "session_id": "s1",
        "state": {"a": 1},
        "created_at": "2023-11-14T22:13:20.000Z",
        "updated_at": "2023-11-14T22:13:21.500Z",
        "expires_at": "2023-11-14T23:13:20.000Z",
        "actor": "alice",
    }


# -- the store contract, on both stores -----------------------------------------------------------
class TestMemorySessionStore(SessionStoreContract, SessionExpiryContract):
    @pytest.fixture
    async def store(self, clock: ManualClock) -> AsyncIterator[SessionStore]:
        async with opened(MemorySessionStore(ttl=TTL, clock=clock)) as store:
            yield store


class TestSQLiteSessionStore(SessionStoreContract, SessionExpiryContract):
    @pytest.fixture
    async def store(self, clock: ManualClock, tmp_path: Path) -> AsyncIterator[SessionStore]:
        path = str(tmp_path / "nexus.db")
        async with opened(SQLiteSessionStore(path, ttl=TTL, clock=clock)) as store:
            yield store


# -- SQLite specifics -----------------------------------------------------------------------------
async def test_sqlite_survives_restart(tmp_path: Path, clock: ManualClock) -> None:
    path = str(tmp_path / "nexus.db")
    first = SQLiteSessionStore(path, ttl=TTL, clock=clock)
    await first.open()
    await first.save(new_session(state={"step": 3}, actor="bob"))
    await first.close()

    second = SQLiteSessionStore(path, ttl=TTL, clock=clock)
    await second.open()
    try:
        assert await second.get("s1") == Session("s1", {"step": 3}, T0, T0, T0 + TTL, "bob")
    finally:
        await second.close()


async def test_sqlite_save_is_committed_before_returning(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    store = SQLiteSessionStore(str(path))
    await store.open()
    try:
        await store.save(new_session(state={"durable": 1}))
        with sqlite3.connect(path) as other:
            rows = other.execute("SELECT id, state FROM sessions").fetchall()
        other.close()
        assert rows == [("s1", '{"durable":1}')]
    finally:
        await store.close()


async def test_sqlite_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "nexus.db"
    store = SQLiteSessionStore(str(path))
    await store.open()
    await store.close()
    assert path.is_file()


async def test_sqlite_in_memory_works(clock: ManualClock) -> None:
    store = SQLiteSessionStore(":memory:", ttl=TTL, clock=clock)
    await store.open()
    try:
        await store.save(new_session())
        assert await store.count_active() == 1
    finally:
        await store.close()


async def test_sqlite_leaves_other_tables_alone(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE executions (id TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO executions VALUES ('wf-1')")
    conn.close()
    store = SQLiteSessionStore(str(path), ttl=TTL)
    await store.open()
    await store.save(new_session())
    await store.purge_expired()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM executions").fetchall() == [("wf-1",)]
    conn.close()


def sqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("nexus-sqlite")}


async def test_sqlite_stores_of_one_file_share_one_worker_thread(tmp_path: Path) -> None:
    path = str(tmp_path / "nexus.db")
    before = sqlite_threads()
    executions = SQLiteExecutionStore(path, flush_interval=3600)
    sessions = SQLiteSessionStore(path)
    await executions.open()
    await sessions.open()
    (worker,) = sqlite_threads() - before
    await sessions.save(new_session())
    await executions.save(ExecutionRecord("ex-1", "wf", "sync", "succeeded", {}, T0))
    await executions.flush()
    assert sqlite_threads() - before == {worker}

    await sessions.close()  # the executions store still uses the worker
    await executions.save(ExecutionRecord("ex-2", "wf", "sync", "succeeded", {}, T0), durable=True)
    assert worker.is_alive()
    await executions.close()  # the last user: the thread ends
    worker.join(timeout=5)
    assert not worker.is_alive()

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM sessions").fetchall() == [("s1",)]
        assert conn.execute("SELECT id FROM executions ORDER BY id").fetchall() == [
            ("ex-1",),
            ("ex-2",),
        ]
    conn.close()
    reopened = SQLiteSessionStore(path, ttl=TTL)  # a new worker starts for a new first user
    await reopened.open()
    try:
        assert await reopened.get("s1") is not None
    finally:
        await reopened.close()


async def test_sqlite_stores_sharing_a_worker_keep_their_own_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    executions = SQLiteExecutionStore(str(path), busy_timeout=30.0)
    sessions = SQLiteSessionStore(str(path), busy_timeout=0.05)
    await executions.open()
    await sessions.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        async with asyncio.timeout(10):  # 0.05 s for sessions, not the executions store's 30 s
            with pytest.raises(StoreUnavailable, match="locked"):
                await sessions.save(new_session())
        waiting = asyncio.create_task(executions.ping())  # waits up to its own 30 s
        await asyncio.sleep(0.3)  # far beyond the sessions store's 0.05 s
        assert not waiting.done()
        other.execute("ROLLBACK")
        async with asyncio.timeout(10):
            await waiting  # got the lock once released: no StoreUnavailable
        await sessions.save(new_session())
    finally:
        other.close()
        await sessions.close()
        await executions.close()


async def test_sqlite_worker_inherited_through_fork_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "nexus.db")
    parent = SQLiteSessionStore(path, ttl=TTL)
    await parent.open()
    before = sqlite_threads()
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # what a forked child sees
    child = SQLiteSessionStore(path, ttl=TTL)
    await child.open()
    try:
        assert len(sqlite_threads() - before) == 1  # its own thread: the parent's is not there
        await child.save(new_session())
        assert await parent.get("s1") is not None
    finally:
        await parent.close()
        await child.close()


async def test_sqlite_in_memory_stores_never_share_a_database(clock: ManualClock) -> None:
    first = SQLiteSessionStore(":memory:", ttl=TTL, clock=clock)
    second = SQLiteSessionStore(":memory:", ttl=TTL, clock=clock)
    await first.open()
    await second.open()
    try:
        await first.save(new_session())
        assert await second.get("s1") is None
    finally:
        await first.close()
        await second.close()


async def test_sqlite_read_only_database_reports_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    writer = SQLiteSessionStore(str(path))
    await writer.open()
    await writer.save(new_session())
    await writer.close()

    reader = SQLiteSessionStore(f"file:{path}?mode=ro")
    await reader.open()
    try:
        assert await reader.get("s1") is not None  # reads still work
        with pytest.raises(StoreUnavailable, match=r"not writable.*readonly"):
            await reader.save(new_session("s2"))
    finally:
        await reader.close()


async def test_sqlite_locked_database_reports_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nexus.db"
    store = SQLiteSessionStore(str(path), busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match=r"not writable.*locked") as info:
            await store.save(new_session())
        assert info.value.status == 503
        other.execute("ROLLBACK")
        await store.save(new_session())  # usable again once the lock is gone
    finally:
        other.close()
        await store.close()


async def test_sqlite_unopenable_path_reports_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteSessionStore(str(blocker / "nexus.db"))
    with pytest.raises(StoreUnavailable, match="cannot be opened"):
        await store.open()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("s1"),
        lambda s: s.save(new_session()),
        lambda s: s.count_active(),
        lambda s: s.ping(),
    ],
    ids=["get", "save", "count_active", "ping"],
)
async def test_sqlite_closed_store_reports_unavailable(
    tmp_path: Path, call: Callable[[SessionStore], Any]
) -> None:
    store = SQLiteSessionStore(str(tmp_path / "nexus.db"))
    await store.open()
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreUnavailable, match="not open"):
        await call(store)


def test_stores_reject_non_positive_ttl() -> None:
    with pytest.raises(ValueError):
        MemorySessionStore(ttl=0)
    with pytest.raises(ValueError):
        SQLiteSessionStore(":memory:", ttl=-1)


# -- SessionLocks ---------------------------------------------------------------------------------
async def _increment(locks: SessionLocks | None, box: dict[str, int], session_id: str) -> None:
    async def body() -> None:
        value = box["n"]
        await asyncio.sleep(0)  # let the others run between read and write
        box["n"] = value + 1

    if locks is None:
        await body()
    else:
        async with locks.hold(session_id):
            await body()


async def test_unlocked_increments_lose_updates() -> None:
    box = {"n": 0}
    await asyncio.gather(*(_increment(None, box, "s1") for _ in range(50)))
    assert box["n"] < 50  # the race the locks exist to prevent is real


async def test_hold_serializes_one_session() -> None:
    locks = SessionLocks()
    box = {"n": 0}
    await asyncio.gather(*(_increment(locks, box, "s1") for _ in range(50)))
    assert box["n"] == 50
    assert len(locks) == 0


async def test_different_sessions_run_in_parallel() -> None:
    locks = SessionLocks()
    release_a = asyncio.Event()
    b_done = asyncio.Event()

    async def hold_a() -> None:
        async with locks.hold("a"):
            await release_a.wait()

    async def run_b() -> None:
        async with locks.hold("b"):
            b_done.set()

    task_a = asyncio.create_task(hold_a())
    await asyncio.sleep(0)
    assert len(locks) == 1
    await asyncio.wait_for(run_b(), timeout=1)  # would deadlock if "b" waited for "a"
    assert b_done.is_set()
    release_a.set()
    await task_a
    assert len(locks) == 0


async def test_same_session_waits_for_the_holder() -> None:
    locks = SessionLocks()
    release = asyncio.Event()
    entered: list[str] = []

    async def first() -> None:
        async with locks.hold("s1"):
            entered.append("first")
            await release.wait()

    async def second() -> None:
        async with locks.hold("s1"):
            entered.append("second")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == ["first"]
    assert len(locks) == 1  # one entry, shared by holder and waiter
    release.set()
    await asyncio.gather(*tasks)
    assert entered == ["first", "second"]
    assert len(locks) == 0


async def test_cancelled_waiter_leaves_no_entry_behind() -> None:
    locks = SessionLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("s1"):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("s1"):
            pytest.fail("a cancelled waiter must never enter")

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await held
    assert len(locks) == 0
    async with locks.hold("s1"):  # still usable
        assert len(locks) == 1


async def test_exception_inside_hold_releases_the_lock() -> None:
    locks = SessionLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("s1"):
            raise RuntimeError("workflow failed")
    assert len(locks) == 0
    async with asyncio.timeout(1):
        async with locks.hold("s1"):
            pass
