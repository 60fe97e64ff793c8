"""Sessions in the embedded SQLite database, surviving restarts.

The ``sessions`` table lives in the same file as the executions store's tables, and both stores
run their statements on that file's one shared
:class:`~nexus_aio.stores.sqlite_worker.SQLiteWorker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar

import orjson

from nexus_aio.stores.sessions import (
    Session,
    SessionStore,
    check_max_sessions,
    check_ttl,
    encode_state,
    too_many_sessions,
)
from nexus_aio.stores.sqlite_worker import SQLiteHandle, reclaim_free_pages

__all__ = ["SQLiteSessionStore"]

logger = logging.getLogger("nexus_aio.stores.sessions")

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    actor TEXT
);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
"""

# One row per session held by a run: the cross-process session lock (see _Lease).
_LOCK_SCHEMA = """
CREATE TABLE IF NOT EXISTS session_locks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    hold TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Take the lock unless a lease that has not expired holds it (atomic: one statement).
_TAKE_LOCK = """
INSERT INTO session_locks (id, owner, hold, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    owner = excluded.owner, hold = excluded.hold, expires_at = excluded.expires_at
WHERE session_locks.expires_at <= ?
"""
_RELEASE_LOCK = "DELETE FROM session_locks WHERE id = ? AND hold = ?"

_UPSERT = """
INSERT INTO sessions (id, state, created_at, updated_at, expires_at, actor)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    expires_at = excluded.expires_at,
    actor = excluded.actor
"""


# -- worker-thread bodies -------------------------------------------------------------------------
def _create_schema(conn: sqlite3.Connection) -> None:
    # Skipping CREATE when the table exists lets a read-only database still open.
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'"
    ).fetchone()
    if exists is None:
        conn.executescript(_SCHEMA)
    locks = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'session_locks'"
    ).fetchone()
    if locks is None:
        conn.executescript(_LOCK_SCHEMA)


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


def _scalar(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    return conn.execute(sql, params).fetchone()[0]


def _purge(conn: sqlite3.Connection, now: float) -> int:
    deleted: int = conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount
    conn.execute("DELETE FROM session_locks WHERE expires_at <= ?", (now,))
    return deleted


def _take_lock(
    conn: sqlite3.Connection, session_id: str, owner: str, hold: str, now: float, until: float
) -> bool:
    """On the worker thread: True when this hold now has the session's lease. A read first, so
    that a waiter polling a held lock does not take the database's write lock each time."""
    held = conn.execute(
        "SELECT 1 FROM session_locks WHERE id = ? AND expires_at > ?", (session_id, now)
    ).fetchone()
    if held is not None:
        return False
    return conn.execute(_TAKE_LOCK, (session_id, owner, hold, until, now)).rowcount > 0


class SQLiteSessionStore(SessionStore):
    """Sessions in the embedded SQLite database, surviving restarts.

    Unlike execution records, session writes are not deferred: the next request of the session
    may land right after this one, and must read what this one wrote. Each write is a single
    autocommitted statement, committed before ``save()`` returns (WAL with
    ``synchronous=NORMAL``: safe against a process crash; a power cut may lose the last commits).

    :meth:`lock` is a lease row in the ``session_locks`` table, so runs of one session take
    turns across every process sharing the file (``serve --workers N``), not only inside one.

    This class creates only ``sessions`` and ``session_locks`` and never touches the other tables.
    ``busy_timeout`` (seconds) is how long a write waits for another process's lock before the
    store reports itself unavailable. ``lock_lease`` (seconds) is how long a session lock held by
    a process that died (SIGKILL) keeps blocking its session; a live holder renews its leases
    every third of it.
    """

    cross_process_lock = True

    def __init__(
        self,
        path: str,
        *,
        ttl: float = 3600,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 2.0,
        max_sessions: int | None = None,
        lock_lease: float = 10.0,
    ) -> None:
        if not lock_lease > 0:
            raise ValueError(f"lock lease must be positive, got {lock_lease!r}")
        self.path = path
        self.ttl = check_ttl(ttl)
        self.max_sessions = check_max_sessions(max_sessions)
        self._capacity: tuple[int, float] | None = None  # (sessions counted or admitted, when)
        self._clock = clock
        self._db = SQLiteHandle(path, "SQLite session store", busy_timeout)
        self._count_cache: tuple[int, float] | None = None
        self._count_dirty = True
        self.lock_lease = float(lock_lease)
        self._owner = secrets.token_hex(8)  # this store instance's leases, renewed together
        self._holds = itertools.count()
        self._held = 0  # leases this instance holds now
        self._renewer: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await self._db.open(_create_schema)

    async def close(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        await self._db.close()

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        self._count_dirty = True
        return await self._db.write(fn, *args)

    def _get_row(
        self, conn: sqlite3.Connection, session_id: str, now: float
    ) -> tuple[Any, ...] | None:
        """On the worker thread: the row of a live session; an expired one is deleted."""
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT state, created_at, updated_at, expires_at, actor FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        if row is None or row[3] > now:
            return row
        try:
            conn.execute("DELETE FROM sessions WHERE id = ? AND expires_at <= ?", (session_id, now))
        except sqlite3.Error as exc:
            # Housekeeping only: the read already answered, and a purge will retry later.
            logger.warning("SQLite session store at %s: cannot delete expired: %s", self.path, exc)
        return None

    # -- interface ---------------------------------------------------------------------------
    async def get(self, session_id: str) -> Session | None:
        row = await self._db.read(self._get_row, session_id, self._clock())
        if row is None:
            return None
        state, created_at, updated_at, expires_at, actor = row
        return Session(session_id, orjson.loads(state), created_at, updated_at, expires_at, actor)

    async def save(self, session: Session) -> None:
        state = encode_state(session).decode()
        now = self._clock()
        expires_at = now + self.ttl
        params = (session.id, state, session.created_at, now, expires_at, session.actor)
        await self._write(_execute, _UPSERT, params)
        session.updated_at = now
        session.expires_at = expires_at

    async def touch(self, session_id: str) -> None:
        now = self._clock()
        await self._write(
            _execute,
            "UPDATE sessions SET expires_at = ? WHERE id = ? AND expires_at > ?",
            (now + self.ttl, session_id, now),
        )

    async def delete(self, session_id: str) -> bool:
        self._capacity = None  # room for a new session shows at once
        deleted = await self._write(_execute, "DELETE FROM sessions WHERE id = ?", (session_id,))
        return deleted > 0

    async def count_active(self) -> int:
        """Counted at most once a second unless this process changed sessions meanwhile
        (``/health`` calls it on every probe; a COUNT per probe would halve its throughput)."""
        now = self._clock()
        cached = self._count_cache
        if cached is not None and not self._count_dirty and 0 <= now - cached[1] < 1.0:
            return cached[0]
        self._count_dirty = False
        count: int = await self._db.read(
            _scalar, "SELECT COUNT(*) FROM sessions WHERE expires_at > ?", (now,)
        )
        self._count_cache = (count, now)
        return count

    async def check_capacity(self) -> None:
        """Counts live sessions at most once a second and adds the sessions admitted since, so a
        flood of new sessions costs one COUNT a second, not one each (other processes' new
        sessions show at the next count)."""
        limit = self.max_sessions
        if limit is None:
            return
        now = self._clock()
        known = self._capacity
        if known is None or not 0 <= now - known[1] < 1.0:
            count: int = await self._db.read(
                _scalar, "SELECT COUNT(*) FROM sessions WHERE expires_at > ?", (now,)
            )
            known = (count, now)
        if known[0] >= limit:
            self._capacity = known
            raise too_many_sessions(limit)
        self._capacity = (known[0] + 1, known[1])

    async def purge_expired(self) -> int:
        """Expired sessions, and the leases that holders which died left behind."""
        purged = await self._write(_purge, self._clock())
        if purged:
            self._capacity = None
            await self._db.write(reclaim_free_pages)
        return purged

    async def ping(self) -> None:
        await self._db.read(_scalar, "SELECT 1", ())

    # -- the cross-process session lock ------------------------------------------------------
    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Hold ``session_id`` against runs in every process sharing the file (:class:`_Lease`)."""
        return _Lease(self, session_id)

    def _renew_soon(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Push every lease of this instance forward each third of a lease, while it has any."""
        while self._held:
            await asyncio.sleep(self.lock_lease / 3)
            if not self._held:
                return
            try:
                await self._db.write(
                    _execute,
                    "UPDATE session_locks SET expires_at = ? WHERE owner = ?",
                    (self._clock() + self.lock_lease, self._owner),
                )
            except Exception as exc:  # the next round tries again; the lease has two more thirds
                logger.warning("SQLite session store at %s: cannot renew locks: %s", self.path, exc)


class _Lease(AbstractAsyncContextManager[None]):
    """A lease row: taken when no unexpired row holds the session, renewed by the store while
    held, deleted by its holder only (its ``hold`` token).

    Waiting polls with a short, growing backoff (a read, no write lock); the wait has no deadline
    of its own because the runtime's execution timeout cancels it. A holder that died leaves a
    row that expires after ``lock_lease``; the next waiter then takes it over.
    """

    __slots__ = ("_hold", "_session_id", "_store")

    def __init__(self, store: SQLiteSessionStore, session_id: str) -> None:
        self._store = store
        self._session_id = session_id
        self._hold = f"{store._owner}:{next(store._holds)}"

    async def __aenter__(self) -> None:
        store = self._store
        delay = 0.002
        while True:
            now = store._clock()
            attempt = asyncio.ensure_future(
                store._db.write(
                    _take_lock,
                    self._session_id,
                    store._owner,
                    self._hold,
                    now,
                    now + store.lock_lease,
                )
            )
            try:
                taken = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # The statement runs on regardless: if it took the lease, give it back now
                # rather than leave the session blocked until the lease expires.
                with contextlib.suppress(Exception):
                    if await attempt:
                        await store._db.write(
                            _execute, _RELEASE_LOCK, (self._session_id, self._hold)
                        )
                raise
            if taken:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.025)
        store._held += 1
        store._renew_soon()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self._store
        store._held -= 1
        release = store._db.write(_execute, _RELEASE_LOCK, (self._session_id, self._hold))
        try:
            await asyncio.shield(release)
        except Exception as err:  # the lease expires on its own
            logger.warning(
                "SQLite session store at %s: cannot release lock of %s: %s",
                store.path,
                self._session_id,
                err,
            )
