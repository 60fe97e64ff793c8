"""One thread and one connection per SQLite database file, shared by the SQLite stores.

The executions and sessions stores keep their tables in the same file. Rather than a thread and a
connection each, both borrow the :class:`SQLiteWorker` of that file: the first store to open
starts it, the last to close stops it (:func:`open_worker` / :meth:`SQLiteWorker.release` count
the users). Every call runs ``fn(connection, *args)`` on the worker's single thread, so SQLite
never blocks the event loop and needs no locking of its own, and one call (say, a whole
transaction) is never interleaved with another store's statements. The worker belongs to no event
loop: stores opened from different loops or threads can share it.

Each store keeps its own ``busy_timeout`` (how long a write waits for another *process's* lock);
the worker switches the connection's setting only when the next call asks for another value.
In-memory databases are never shared: every ``:memory:`` store has a database of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from nexus_aio.errors import StoreUnavailable
from nexus_aio.stores.sqlite_paths import prepare_parent_directory

__all__ = ["SQLiteHandle", "SQLiteWorker", "open_worker", "reclaim_free_pages"]

_T = TypeVar("_T")

logger = logging.getLogger("nexus_aio.stores")

#: Bytes the write-ahead log is truncated to after a checkpoint (it otherwise keeps the size of
#: its largest batch for good).
WAL_SIZE_LIMIT = 64 * 1024 * 1024
_INCREMENTAL = 2  # PRAGMA auto_vacuum value

_workers: dict[str, SQLiteWorker] = {}
_workers_lock = threading.Lock()  # open and release may run in different threads' loops


def _share_key(path: str) -> str | None:
    """The registry key of ``path``, or None for a database that must not be shared."""
    if not path or ":memory:" in path or "mode=memory" in path:
        return None
    if path.startswith("file:"):
        return path  # a URI names its own options (mode=ro...): only the same URI shares
    return os.path.realpath(path)


def _busy_ms(busy_timeout: float) -> int:
    return int(busy_timeout * 1000)


class SQLiteWorker:
    """The thread and connection of one database file; get one from :func:`open_worker`."""

    __slots__ = ("_busy", "_conn", "_connected", "_executor", "_key", "_pid", "_users", "path")

    def __init__(self, path: str, key: str | None, busy_timeout: float) -> None:
        self.path = path
        self._key = key
        self._pid = os.getpid()  # a forked child has the registry but not the thread
        self._users = 0
        self._conn: sqlite3.Connection | None = None
        self._busy = _busy_ms(busy_timeout)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nexus-sqlite")
        # Submitted first, so every later call finds the connection made (or its error).
        self._connected: Future[None] = self._executor.submit(self._connect, busy_timeout)

    def _connect(self, busy_timeout: float) -> None:
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout,
            isolation_level=None,  # autocommit; the stores open their transactions explicitly
            check_same_thread=False,  # created here, used only by this same worker thread
            uri=True,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy}")
            _use_incremental_vacuum(conn, self.path)
            # Only switch when needed, so that a read-only database still opens for reads.
            if conn.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            # A multi-row upsert inside a transaction keeps a statement journal (the pages it
            # changed, to undo just that statement); above 64 KiB SQLite spills it to a temporary
            # file: a file created, written and deleted for every statement of a batch write.
            # In memory it is a copy of those pages, freed at the statement's end.
            conn.execute("PRAGMA temp_store = MEMORY")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, busy: int, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        conn = self._conn
        if conn is None:
            raise sqlite3.ProgrammingError("the database connection is closed")
        if busy != self._busy:
            conn.execute(f"PRAGMA busy_timeout = {busy}")
            self._busy = busy
        return fn(conn, *args)

    async def call(self, busy_timeout: float, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the worker thread, with the caller's busy timeout."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run, _busy_ms(busy_timeout), fn, args
        )

    async def release(self) -> None:
        """Give back one :func:`open_worker`; the last user closes the connection and thread."""
        with _workers_lock:
            self._users -= 1
            last = self._users == 0
            if last:
                self._forget()
        if not last:
            return
        try:
            await asyncio.wrap_future(self._executor.submit(self._disconnect))
        finally:
            self._executor.shutdown(wait=False)

    def _forget(self) -> None:
        """Drop from the registry (caller holds the lock): the next open starts afresh."""
        if self._key is not None and _workers.get(self._key) is self:
            del _workers[self._key]


def _use_incremental_vacuum(conn: sqlite3.Connection, path: str) -> None:
    """New files get ``auto_vacuum = INCREMENTAL`` (possible only before the first table), so
    that :func:`reclaim_free_pages` can shrink them after purges. A file created without it
    keeps working (freed pages are reused, the file does not shrink); switching it takes a
    one-off ``VACUUM``, which rewrites the whole file under an exclusive lock, so it is left
    to the operator (docs/limits.md) and said once here."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
        return
    if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    elif _share_key(path) is not None:
        logger.info(
            "SQLite file %s was created without incremental vacuum: purged space is reused but"
            " the file does not shrink; to switch, stop the server and run once:"
            " sqlite3 %s 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'",
            path,
            path,
        )


def reclaim_free_pages(conn: sqlite3.Connection) -> int:
    """After a purge: give the file's free pages back to the filesystem and checkpoint, so the
    file shrinks now rather than at some later checkpoint. Returns the pages freed (0 when there
    were none, or the file is not in incremental auto-vacuum mode).

    Best effort: the purge it follows has committed, so a failure here is logged, not raised.
    The checkpoint does not wait for other processes (busy timeout 0): when one is reading or
    writing, the file shrinks at a later checkpoint instead of stalling this worker."""
    try:
        free: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if not free or conn.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
            return 0
        # Through executescript, which steps the statement to its end (execute frees one page).
        conn.executescript("PRAGMA incremental_vacuum;")
        busy = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(busy)}")
    except sqlite3.Error as exc:
        logger.warning("cannot give free pages back to the filesystem: %s", exc)
        return 0
    return free


async def open_worker(path: str, busy_timeout: float) -> SQLiteWorker:
    """The worker of ``path``, started (connected, WAL) by its first user.

    Raises ``sqlite3.Error`` when the database cannot be opened; each store words that its own
    way. Every successful call must be paired with one :meth:`SQLiteWorker.release`.
    """
    key = _share_key(path)
    with _workers_lock:
        worker = None if key is None else _workers.get(key)
        if worker is None or worker._pid != os.getpid():
            worker = SQLiteWorker(path, key, busy_timeout)
            if key is not None:
                _workers[key] = worker
        worker._users += 1
    try:
        # Shielded: one opener being cancelled must not cancel the connect the others await.
        await asyncio.shield(asyncio.wrap_future(worker._connected))
    except BaseException:
        with _workers_lock:
            connected = worker._connected
            if connected.done() and (connected.cancelled() or connected.exception() is not None):
                worker._forget()  # a failed connect is not reused by later opens
        await worker.release()
        raise
    return worker


class SQLiteHandle:
    """A store's use of the worker of its database file: opening it (with the store's schema),
    calls on it, and SQLite errors as the ``StoreUnavailable`` a store reports."""

    __slots__ = ("_worker", "busy_timeout", "label", "path")

    def __init__(self, path: str, label: str, busy_timeout: float) -> None:
        self.path = path
        self.label = label  # "SQLite store", "SQLite session store": how errors name it
        self.busy_timeout = busy_timeout
        self._worker: SQLiteWorker | None = None

    @property
    def is_open(self) -> bool:
        return self._worker is not None

    async def open(self, create_schema: Callable[[sqlite3.Connection], None]) -> None:
        if self._worker is not None:
            raise RuntimeError("store is already open")
        prepare_parent_directory(self.path, self.label)
        try:
            worker = await open_worker(self.path, self.busy_timeout)
        except sqlite3.Error as exc:
            raise self._unavailable("cannot be opened", exc) from exc
        try:
            await worker.call(self.busy_timeout, create_schema)
        except BaseException as exc:
            await worker.release()
            if isinstance(exc, sqlite3.Error):
                raise self._unavailable("cannot be opened", exc) from exc
            raise
        self._worker = worker

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.release()

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the worker thread; SQLite errors pass through."""
        if self._worker is None:
            raise StoreUnavailable(f"{self.label} at {self.path} is not open")
        return await self._worker.call(self.busy_timeout, fn, *args)

    async def read(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self.call(fn, *args)
        except sqlite3.Error as exc:
            raise self._unavailable("cannot be read", exc) from exc

    async def write(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self.call(fn, *args)
        except sqlite3.Error as exc:
            raise self.not_writable(exc) from exc

    def not_writable(self, exc: BaseException) -> StoreUnavailable:
        return self._unavailable("is not writable", exc)

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"{self.label} at {self.path} {what}: {exc}")
