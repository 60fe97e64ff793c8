"""Per-session serialisation: runs of one session take turns in this process."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from types import TracebackType

__all__ = ["SessionLocks"]


class _LockEntry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holders plus waiters


class _Hold:
    """``async with`` body of :meth:`SessionLocks.hold`: count in, lock, unlock, count out."""

    __slots__ = ("_entries", "_entry", "_session_id")

    def __init__(self, entries: dict[str, _LockEntry], session_id: str) -> None:
        self._entries = entries
        self._session_id = session_id
        self._entry: _LockEntry | None = None

    async def __aenter__(self) -> None:
        entry = self._entries.get(self._session_id)
        if entry is None:
            entry = self._entries[self._session_id] = _LockEntry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting: we never held it
            self._release_entry(entry)
            raise
        self._entry = entry

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._entry
        assert entry is not None, "hold() exited without entering"
        self._entry = None
        entry.lock.release()
        self._release_entry(entry)

    def _release_entry(self, entry: _LockEntry) -> None:
        entry.users -= 1
        if entry.users == 0 and self._entries.get(self._session_id) is entry:
            del self._entries[self._session_id]


class SessionLocks:
    """Serializes executions of one session in this process: ``async with locks.hold(sid): ...``.

    Each id gets a refcounted ``asyncio.Lock``; the entry is removed as soon as nobody holds or
    waits for it, so memory follows the number of sessions in use, not the number ever seen.
    Different ids never block each other. Runs in other processes are not covered: a store shared
    by several processes orders them with :meth:`SessionStore.lock`, taken inside this lock so
    that one process has at most one waiter per session on the shared lock (SQLite and Redis
    hold a lease; a store without one lets the last save win).
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, _LockEntry] = {}

    def hold(self, session_id: str) -> AbstractAsyncContextManager[None]:
        return _Hold(self._entries, session_id)

    def __len__(self) -> int:
        return len(self._entries)
