"""Sessions on Redis, with a lock that serializes one session's runs across processes.

A session is one string key ``{prefix}session:{id}`` holding ``[created_at, updated_at, actor]``
and the state JSON, with a Redis expiry (PEXPIRE) as its sliding TTL: Redis deletes expired
sessions itself, and the expiry time is read back with PTTL instead of being stored twice. A
sorted set of ``id -> expires_at`` makes ``count_active`` and ``purge_expired`` cheap (no SCAN).

The core's ``SessionLocks`` only orders runs inside one process; :meth:`RedisSessionStore.lock`
adds a lease lock (SET NX PX with a random token, renewed while the run lasts, released by a
compare-and-delete script) so that runs of one session on different instances take turns too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import orjson
import redis.asyncio as aioredis

from nexus_aio.stores.sessions import Session, SessionStore, check_max_sessions, encode_state

from .client import UNREACHABLE, Guard

__all__ = ["RedisSessionStore"]

log = logging.getLogger("nexus_aio.redis")

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def _encode(session: Session, updated_at: float) -> bytes:
    """Header line + state JSON; the core's encoder refuses state JSON cannot hold (a 400)."""
    body = encode_state(session)
    head = orjson.dumps([session.created_at, updated_at, session.actor])
    return head + b"\n" + body  # orjson never emits a raw newline, so the split is unambiguous


class RedisSessionStore(SessionStore):
    """Sessions shared by every instance that points at the same Redis."""

    cross_process_lock = True

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl: float = 3600,
        prefix: str = "nexus:",
        lock_lease: float = 10.0,
        clock: Callable[[], float] = time.time,
        owns_client: bool = True,
        max_sessions: int | None = None,
    ) -> None:
        self.max_sessions = check_max_sessions(max_sessions)  # counted by ZCOUNT: O(log n)
        if not ttl > 0:
            raise ValueError(f"session ttl must be positive, got {ttl!r}")
        if not lock_lease > 0:
            raise ValueError(f"lock lease must be positive, got {lock_lease!r}")
        self.ttl = float(ttl)
        self._ttl_ms = max(1, int(ttl * 1000))
        self._client = client
        self._prefix = prefix + "session:"
        self._lock_prefix = prefix + "session-lock:"
        self._index = prefix + "sessions"
        self._lease_ms = max(1, int(lock_lease * 1000))
        self._clock = clock
        self._owns_client = owns_client
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._guard = Guard("Redis (sessions)")

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def get(self, session_id: str) -> Session | None:
        with self._guard:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self._prefix + session_id)
                pipe.pttl(self._prefix + session_id)
                raw, pttl = await pipe.execute()
        if raw is None or pttl == -2:
            return None
        head, _, body = raw.partition(b"\n")
        created_at, updated_at, actor = orjson.loads(head)
        now = self._clock()
        expires_at = now + pttl / 1000 if pttl >= 0 else now + self.ttl
        return Session(session_id, orjson.loads(body), created_at, updated_at, expires_at, actor)

    async def save(self, session: Session) -> None:
        now = self._clock()
        value = _encode(session, now)  # refused state changes nothing, not even the session
        expires_at = now + self.ttl
        with self._guard:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._prefix + session.id, value, px=self._ttl_ms)
                pipe.zadd(self._index, {session.id: expires_at})
                await pipe.execute()
        session.updated_at = now
        session.expires_at = expires_at

    async def touch(self, session_id: str) -> None:
        with self._guard:
            if await self._client.pexpire(self._prefix + session_id, self._ttl_ms):
                await self._client.zadd(
                    self._index, {session_id: self._clock() + self.ttl}, xx=True
                )

    async def delete(self, session_id: str) -> bool:
        with self._guard:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._prefix + session_id)
                pipe.zrem(self._index, session_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    async def count_active(self) -> int:
        with self._guard:
            return int(await self._client.zcount(self._index, f"({self._clock()!r}", "+inf"))

    async def purge_expired(self) -> int:
        """Redis already dropped the expired keys; this trims the index that counts them."""
        with self._guard:
            return int(await self._client.zremrangebyscore(self._index, "-inf", self._clock()))

    async def ping(self) -> None:
        with self._guard:
            await self._client.ping()

    def lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Hold ``session_id`` across every process sharing this Redis (see :class:`_Lease`)."""
        return _Lease(self, self._lock_prefix + session_id)


class _Lease(AbstractAsyncContextManager[None]):
    """A Redis lease lock: acquired with SET NX PX, renewed every third of the lease, released
    only by its holder (token compare-and-delete).

    Waiting polls with a short, growing backoff; the wait has no deadline of its own because the
    runtime's execution timeout cancels it. If the holder dies, its lease expires and the next
    waiter proceeds, so a crashed process blocks a session for at most one lease.
    """

    __slots__ = ("_key", "_renewer", "_store", "_token")

    def __init__(self, store: RedisSessionStore, key: str) -> None:
        self._store = store
        self._key = key
        self._token = secrets.token_hex(16)
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        store = self._store
        delay = 0.002
        while True:
            with store._guard:
                acquired = await store._client.set(
                    self._key, self._token, nx=True, px=store._lease_ms
                )
            if acquired:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        store = self._store
        period = store._lease_ms / 3000
        while True:
            await asyncio.sleep(period)
            try:
                kept = await store._renew(keys=[self._key], args=[self._token, store._lease_ms])
            except UNREACHABLE as exc:
                log.warning("cannot renew session lock %s: %s", self._key, exc)
                continue
            if not kept:
                log.warning("session lock %s expired while held", self._key)
                return

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        try:
            await asyncio.shield(self._store._release(keys=[self._key], args=[self._token]))
        except UNREACHABLE as err:  # the lease expires on its own
            log.warning("cannot release session lock %s: %s", self._key, err)
