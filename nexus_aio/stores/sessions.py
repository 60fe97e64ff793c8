"""Sessions: state that outlives one execution, named by ``X-Session-ID``, with a sliding TTL.

A workflow run inside a session reads ``ctx.session`` and the runtime saves it back when the run
succeeds; every save pushes the expiry ``ttl`` seconds into the future, so a session lives as long
as it is used. :class:`MemorySessionStore` serves tests and throwaway servers;
:class:`~nexus_aio.stores.sqlite_sessions.SQLiteSessionStore` keeps sessions across restarts in the
same database file as the executions. The runtime's ``SessionLocks`` make runs of one session
take turns in this process, so two concurrent requests cannot both read the old state and lose
one update; a store shared by several processes adds its own :meth:`SessionStore.lock`.
``nexus_aio.testing.SessionStoreContract`` is the test suite every store passes.

State is stored as JSON in both stores: a session must survive a restart or a move to another
store, so the memory store refuses what SQLite could not hold rather than accepting it silently.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from nexus_aio.envelope import iso_timestamp
from nexus_aio.errors import PayloadTooLarge, ServiceUnavailable, ValidationError

__all__ = [
    "SESSION_ID_PATTERN",
    "MemorySessionStore",
    "Session",
    "SessionStore",
    "check_max_sessions",
    "check_ttl",
    "encode_state",
    "too_many_sessions",
    "validate_session_id",
]

SESSION_ID_PATTERN: re.Pattern[str] = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")
"""1 to 128 characters of ``A-Z a-z 0-9 . _ : -``: safe in headers, URLs, logs and SQL keys."""

_SESSION_ID_RULE = "1 to 128 characters from A-Z a-z 0-9 . _ : -"


def validate_session_id(value: Any) -> str:
    """Return ``value`` if it is a usable session id; otherwise raise a 400 naming the field.

    The id arrives from a client header or body and ends up in URLs, logs and storage keys, so it
    is checked once at the edge instead of being escaped everywhere it goes.
    """
    if isinstance(value, str) and SESSION_ID_PATTERN.match(value) is not None:
        return value
    raise ValidationError(
        "Invalid session id",
        details={"field": "session_id", "expected": _SESSION_ID_RULE},
    )


# -- data -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Session:
    """One session as read from a store; ``save()`` refreshes ``updated_at`` and ``expires_at``."""

    id: str
    state: dict[str, Any]
    created_at: float  # epoch seconds
    updated_at: float
    expires_at: float
    actor: str | None = None  # id of the actor that created it, when auth is on

    def to_dict(self) -> dict[str, Any]:
        """JSON for the API: times as ISO-8601 UTC strings ending in ``Z``."""
        return {
            "session_id": self.id,
            "state": self.state,
            "created_at": iso_timestamp(self.created_at),
            "updated_at": iso_timestamp(self.updated_at),
            "expires_at": iso_timestamp(self.expires_at),
            "actor": self.actor,
        }


def encode_state(session: Session) -> bytes:
    """The state as JSON, or a 400: what cannot be JSON cannot be stored (or restored) anywhere."""
    state = session.state
    if not isinstance(state, dict):
        raise ValidationError(
            "Session state must be a JSON object",
            details={"field": "session", "received": type(state).__name__},
        )
    try:
        return orjson.dumps(state)
    except orjson.JSONEncodeError as exc:
        raise ValidationError(
            f"Session state is not JSON-serialisable: {exc}",
            details={"field": "session", "session_id": session.id},
        ) from exc


SESSION_LIMIT_RETRY_AFTER = 60
"""Seconds a client refused a new session is told to wait: sessions expire or get deleted, and
the purge runs at least once a minute."""


def too_many_sessions(max_sessions: int) -> ServiceUnavailable:
    """The 503 for a new session beyond ``max_sessions`` (existing sessions keep working)."""
    return ServiceUnavailable(
        f"The server holds its limit of {max_sessions} sessions; retry later or reuse a session",
        headers={"Retry-After": str(SESSION_LIMIT_RETRY_AFTER)},
        details={"max_sessions": max_sessions},
    )


def check_max_sessions(max_sessions: int | None) -> int | None:
    if max_sessions is not None and max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1, got {max_sessions!r}")
    return max_sessions


def check_ttl(ttl: float) -> float:
    """``ttl`` as a float, or ValueError: a session that never lives is a configuration error."""
    if not ttl > 0:
        raise ValueError(f"session ttl must be positive, got {ttl!r}")
    return float(ttl)


# -- interface ------------------------------------------------------------------------------------
class SessionStore(ABC):
    """Where sessions live. ``ttl`` is the sliding lifetime, in seconds, applied by ``save()``.

    An expired session is gone: ``get()`` returns None for it (and deletes it), exactly as if it
    never existed, so callers never see state past its lifetime even before a purge runs.

    ``cross_process_lock`` declares what :meth:`lock` does: True when it excludes holders in
    every process sharing the store (SQLite, Redis), False (the default) when it holds nothing.

    ``max_sessions`` (None: no limit) bounds how many live sessions the store holds: the runtime
    calls :meth:`check_capacity` before it creates one.
    """

    ttl: float
    cross_process_lock: bool = False
    max_sessions: int | None = None

    async def open(self) -> None:
        """Acquire resources (connections, threads); called once at startup."""
        return None

    async def close(self) -> None:
        """Release what ``open()`` acquired; safe to call twice."""
        return None

    @abstractmethod
    async def get(self, session_id: str) -> Session | None:
        """The live session, or None when absent or expired (an expired one is deleted)."""

    @abstractmethod
    async def save(self, session: Session) -> None:
        """Store ``session`` and set ``updated_at`` = now, ``expires_at`` = now + ttl.

        Raises ``ValidationError`` (field ``session``) when the state is not JSON-serialisable.
        """

    @abstractmethod
    async def touch(self, session_id: str) -> None:
        """Extend a live session's expiry to now + ttl without changing its state."""

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Remove a session; True when it existed."""

    @abstractmethod
    async def count_active(self) -> int:
        """How many sessions have not expired (for health and metrics)."""

    @abstractmethod
    async def purge_expired(self) -> int:
        """Delete every expired session and return how many; the core calls it periodically."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot serve requests right now."""
        return None

    async def check_capacity(self) -> None:
        """Before a new session is created: raise the 503 of :func:`too_many_sessions` when the
        store already holds ``max_sessions`` live ones. The default counts with
        :meth:`count_active`; a store may count more cheaply (and approximately, erring by the
        sessions being created at the same moment)."""
        limit = self.max_sessions
        if limit is not None and await self.count_active() >= limit:
            raise too_many_sessions(limit)

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Hold ``session_id`` against runs in *other* processes sharing this store.

        Runs in this process already take turns (the runtime's :class:`SessionLocks`); a store
        shared across processes (SQLite, Redis) returns a cross-process lock held for the whole
        step. The default holds nothing.
        """
        return contextlib.nullcontext()


# -- memory ---------------------------------------------------------------------------------------
#: What one stored session costs besides its state's JSON (the object, its times, the dict slot).
SESSION_OVERHEAD = 300


class _Stored:
    """A saved session with its state kept as JSON, so later mutation by a caller is not a write
    (an exact copy: orjson's own ``bytes`` keep its whole output buffer, 4 KiB or more)."""

    __slots__ = ("actor", "created_at", "expires_at", "state", "updated_at")

    def __init__(
        self,
        state: bytes,
        created_at: float,
        updated_at: float,
        expires_at: float,
        actor: str | None,
    ) -> None:
        self.state = memoryview(state).tobytes()
        self.created_at = created_at
        self.updated_at = updated_at
        self.expires_at = expires_at
        self.actor = actor

    @property
    def size(self) -> int:
        return SESSION_OVERHEAD + len(self.state)


class MemorySessionStore(SessionStore):
    """Sessions in a dict: for tests and servers whose sessions may vanish on restart.

    Bounded by ``max_sessions`` (new sessions beyond it are refused, see
    :meth:`SessionStore.check_capacity`) and by ``max_bytes`` (state JSON plus a fixed overhead
    per session): a save beyond it evicts the least recently saved sessions, never the one being
    saved; a single state larger than ``max_bytes`` is refused with 413.
    """

    def __init__(
        self,
        *,
        ttl: float = 3600,
        clock: Callable[[], float] = time.time,
        max_sessions: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
        self.ttl = check_ttl(ttl)
        self.max_sessions = check_max_sessions(max_sessions)
        self._max_bytes = max_bytes
        self._clock = clock
        self._sessions: dict[str, _Stored] = {}  # least recently saved first
        self._bytes = 0
        self._swept_at = -math.inf  # last sweep for expired sessions when at a bound

    @property
    def size_bytes(self) -> int:
        """What the held sessions count for against ``max_bytes``."""
        return self._bytes

    def _remove(self, session_id: str) -> bool:
        stored = self._sessions.pop(session_id, None)
        if stored is None:
            return False
        self._bytes -= stored.size
        return True

    async def get(self, session_id: str) -> Session | None:
        stored = self._sessions.get(session_id)
        if stored is None:
            return None
        if stored.expires_at <= self._clock():
            self._remove(session_id)
            return None
        return Session(
            session_id,
            orjson.loads(stored.state),
            stored.created_at,
            stored.updated_at,
            stored.expires_at,
            stored.actor,
        )

    async def save(self, session: Session) -> None:
        state = encode_state(session)
        limit = self._max_bytes
        if limit is not None and SESSION_OVERHEAD + len(state) > limit:
            raise PayloadTooLarge(
                f"Session state of {len(state)} bytes is larger than the session store holds",
                details={"session_id": session.id, "memory_sessions_max_bytes": limit},
            )
        now = self._clock()
        session.updated_at = now
        session.expires_at = now + self.ttl
        stored = _Stored(state, session.created_at, now, session.expires_at, session.actor)
        self._remove(session.id)  # re-inserted last: the order is least recently saved first
        self._sessions[session.id] = stored
        self._bytes += stored.size
        if limit is not None and self._bytes > limit:
            self._evict(limit, keep=session.id)

    def _evict(self, limit: int, keep: str) -> None:
        """Expired sessions first, then the least recently saved, until under ``limit``."""
        self._sweep()
        for session_id in list(self._sessions):
            if self._bytes <= limit:
                return
            if session_id != keep:
                self._remove(session_id)

    async def touch(self, session_id: str) -> None:
        stored = self._sessions.get(session_id)
        if stored is None:
            return
        now = self._clock()
        if stored.expires_at <= now:
            self._remove(session_id)
        else:
            stored.expires_at = now + self.ttl

    async def delete(self, session_id: str) -> bool:
        return self._remove(session_id)

    async def count_active(self) -> int:
        now = self._clock()
        return sum(1 for stored in self._sessions.values() if stored.expires_at > now)

    async def check_capacity(self) -> None:
        limit = self.max_sessions
        if limit is None or len(self._sessions) < limit:
            return
        self._sweep()
        if len(self._sessions) >= limit:
            raise too_many_sessions(limit)

    async def purge_expired(self) -> int:
        return self._purge(self._clock())

    def _sweep(self) -> None:
        """Purge expired sessions at a bound, at most once a second: a flood of requests at the
        limit must not each pay for a scan of every session."""
        now = self._clock()
        if not 0 <= now - self._swept_at < 1.0:
            self._swept_at = now
            self._purge(now)

    def _purge(self, now: float) -> int:
        expired = [sid for sid, stored in self._sessions.items() if stored.expires_at <= now]
        for sid in expired:
            self._remove(sid)
        return len(expired)
