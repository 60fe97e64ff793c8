"""Sessions in the embedded SQLite database, surviving restarts.

The ``sessions`` table lives in the same file as the executions store's tables, and both stores
run their statements on that file's one shared
:class:`~nexus_aio.stores.sqlite_worker.SQLiteWorker`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
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


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


def _scalar(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    return conn.execute(sql, params).fetchone()[0]


class SQLiteSessionStore(SessionStore):
    """Sessions in the embedded SQLite database, surviving restarts.

    Unlike execution records, session writes are not deferred: the next request of the session
    may land right after this one, and must read what this one wrote. Each write is a single
    autocommitted statement, committed before ``save()`` returns (WAL with
    ``synchronous=NORMAL``: safe against a process crash; a power cut may lose the last commits).

    This class creates only ``sessions`` (and its index) and never touches the other tables.
    ``busy_timeout`` (seconds) is how long a write waits for another process's lock before the
    store reports itself unavailable.
    """

    def __init__(
        self,
        path: str,
        *,
        ttl: float = 3600,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 2.0,
        max_sessions: int | None = None,
    ) -> None:
        self.path = path
        self.ttl = check_ttl(ttl)
        self.max_sessions = check_max_sessions(max_sessions)
        self._capacity: tuple[int, float] | None = None  # (sessions counted or admitted, when)
        self._clock = clock
        self._db = SQLiteHandle(path, "SQLite session store", busy_timeout)
        self._count_cache: tuple[int, float] | None = None
        self._count_dirty = True

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await self._db.open(_create_schema)

    async def close(self) -> None:
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
        purged = await self._write(
            _execute, "DELETE FROM sessions WHERE expires_at <= ?", (self._clock(),)
        )
        if purged:
            self._capacity = None
            await self._db.write(reclaim_free_pages)
        return purged

    async def ping(self) -> None:
        await self._db.read(_scalar, "SELECT 1", ())
