"""Executions, their events and idempotency keys on Redis, readable from every instance.

Layout under ``prefix`` (default ``nexus:``):

* ``exec:{id}``: the record as JSON; ``execs``: sorted set ``id -> created_at`` (history, newest
  first; equal scores order by id, which is exactly the core's ``(created_at, id)`` sort key);
* ``events:{id}``: a Redis Stream whose entry ids are ``{seq}-0``, so the SSE ``id`` (the core's
  1-based ``seq``) *is* the stream position: ``Last-Event-ID: N`` resumes at ``XRANGE (N+1)-0 +``
  on any instance, and ``XREAD BLOCK`` follows a run that executes elsewhere;
* ``idem:{key}``: the remembered response, written with ``SET NX PX`` (first writer wins);
* ``active``: set of the runs a serving instance owns (queued or running in its process), each
  with ``lease:{id}`` (the owner's token, expiring after ``lease`` seconds unless renewed);
  ``cancel:{id}``: a cancel request, watched by the run's owner.

A record is written by one Lua script (:data:`_SAVE`) that never lets a write replace a finished
record with another status (a late ``running`` snapshot cannot undo ``succeeded``/``cancelled``):
the record's value starts with ``{status}\n`` so the script reads the status without parsing
the JSON. Ownership, leases and cancel requests are described at :class:`RedisExecutionStore`.

``live_events = True`` tells the runtime to hand events over as they are pushed
(:meth:`RedisExecutionStore.publish`) instead of only at the end, so followers on other instances
see them live. Published events are written in order by one background writer per store.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from nexus_aio.envelope import error_envelope
from nexus_aio.errors import Cancelled, Interrupted, NexusError
from nexus_aio.stores.executions import (
    EVERYONE,
    TERMINAL,
    Everyone,
    ExecutionEvent,
    ExecutionRecord,
    ExecutionStore,
    IdempotencyEntry,
    check_list_args,
    decode_cursor,
    encode_cursor,
    json_text,
    matches,
    summarise,
)

from .client import Guard

__all__ = ["RedisExecutionStore"]

log = logging.getLogger("nexus_aio.redis")

WATCH_INTERVAL = 0.2  # seconds between checks of this process's runs' cancel requests

# Store an idempotency entry unless one that has not expired by the store's clock holds the key
# (the same rule as get_idempotency; Redis's own expiry only frees the memory).
# ARGV: value ("[hash, execution_id, status, expires_at]\n" + body), ttl ms, now.
_PUT_IDEMPOTENCY = """
local held = redis.call('GET', KEYS[1])
if held then
  local newline = string.find(held, '\\n', 1, true)
  local head = cjson.decode(string.sub(held, 1, (newline or 0) - 1))
  if tonumber(head[4]) > tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Replace (ARGV[1] value, ARGV[2] ttl ms) or delete (no ARGV[1]) the entry of KEYS[1] if it
# names the execution ARGV[3]: an in-flight claim settling or released by its owner.
_SETTLE_IDEMPOTENCY = """
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local newline = string.find(held, '\\n', 1, true)
local head = cjson.decode(string.sub(held, 1, (newline or 0) - 1))
if head[2] ~= ARGV[3] then return 0 end
if ARGV[1] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Append events numbered after the stream's last one (a whole log passed again is harmless).
# ARGV: seq, type, data, ts, seq, type, ...
_ADD_EVENTS = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastseq = 0
if #last > 0 then lastseq = tonumber(string.match(last[1][1], '^(%d+)')) end
for i = 1, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if seq > lastseq then
    redis.call('XADD', KEYS[1], seq .. '-0', 't', ARGV[i + 1], 'd', ARGV[i + 2], 'ts', ARGV[i + 3])
    lastseq = seq
  end
end
return lastseq
"""

_TERMINAL_LUA = "{" + ", ".join(f"{status} = true" for status in sorted(TERMINAL)) + "}"

# Write a record (and its index entry) unless it would change a finished record's status, or
# unless a condition fails; then keep the owner's lease and the ``active`` set up to date.
# KEYS: exec:{id}, execs, active, lease:{id}. ARGV: value, created_at, id, status, lease ms
# (0: not claimed), owner token, expected current status ('' : any), '1': only with no lease.
# Returns 1 (written), 0 (refused: finished), -1 (refused: a condition failed).
_SAVE = (
    "local terminal = "
    + _TERMINAL_LUA
    + """
local held = nil
local cur = redis.call('GET', KEYS[1])
if cur then held = string.match(cur, '^([%a_]+)\\n') end
if held and terminal[held] and held ~= ARGV[4] then return 0 end
if ARGV[7] ~= '' and held ~= ARGV[7] then return -1 end
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if terminal[ARGV[4]] then
  redis.call('SREM', KEYS[3], ARGV[3])
  redis.call('DEL', KEYS[4])
elseif tonumber(ARGV[5]) > 0 then
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[5])
end
return 1
"""
)

_FIELDS = (
    "id",
    "workflow",
    "mode",
    "status",
    "inputs",
    "created_at",
    "result",
    "error",
    "started_at",
    "finished_at",
    "session_id",
    "request_id",
    "actor",
    "attempts",  # from here on: a record stored before a field loads with its default
    "trace_id",
    "trigger",
    "schedule_id",
    "owner",
)
_END_EVENTS = frozenset({"complete", "error"})
_FETCH_BYTES = 4 * 1024 * 1024  # records read at once by a bounded list()


def _dump_record(record: ExecutionRecord) -> str:
    # json_text, as the SQLite store: a result JSON cannot hold must not fail the write.
    # The status first, on its own line: the save script compares it without parsing JSON.
    return record.status + "\n" + json_text([getattr(record, name) for name in _FIELDS])


def _load_record(raw: bytes) -> ExecutionRecord:
    if raw[:1] != b"[":  # "{status}\n[...]" (a bare array: written before the status line)
        raw = raw[raw.index(b"\n") + 1 :]
    return ExecutionRecord(*orjson.loads(raw))


def _event_args(events: Sequence[ExecutionEvent]) -> list[Any]:
    args: list[Any] = []
    for e in events:
        args += (e.seq, e.type, json_text(e.data), repr(e.ts))
    return args


def _parse_entries(entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> list[ExecutionEvent]:
    return [
        ExecutionEvent(
            int(entry_id.split(b"-", 1)[0]),
            fields[b"t"].decode(),
            orjson.loads(fields[b"d"]),
            float(fields[b"ts"]),
        )
        for entry_id, fields in entries
    ]


class RedisExecutionStore(ExecutionStore):
    """The executions store shared by every instance (and every arq worker) on one Redis.

    *Owned runs.* A queued or running record this process saves (not one it only queues for a
    worker: ``save(..., claim=False)``) is a run of this process. While it has any, a keeper
    task polls their ``cancel:{id}`` keys every :data:`WATCH_INTERVAL` and hands each request
    to :attr:`on_cancel_request` (the execution service's ``cancel``, wired by the plugin), and
    renews their leases every third of ``lease``. A run whose record someone else ended (a
    cancel of a queued run, a sweep) is also handed over, so its work stops.

    *Leases.* With :attr:`leases` (serving instances; not arq workers: a lost worker's job is
    retried by arq instead) an owned run is in ``active`` with ``lease:{id}``. Every open store
    sweeps ``active`` every ``lease / 2`` seconds: a run whose lease expired (its owner died
    without ending it) becomes ``interrupted``, with an ``Interrupted`` error event.
    """

    live_events = True

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "nexus:",
        clock: Callable[[], float] = time.time,
        owns_client: bool = True,
        follow_block: float = 0.5,
        lease: float = 10.0,
        cancel_wait: float = 5.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._index = prefix + "execs"
        self._clock = clock
        self._owns_client = owns_client
        self._block_ms = max(1, int(follow_block * 1000))
        self._add_events = client.register_script(_ADD_EVENTS)
        self._put_idempotency = client.register_script(_PUT_IDEMPOTENCY)
        self._settle_idempotency = client.register_script(_SETTLE_IDEMPOTENCY)
        self._guard = Guard("Redis (executions)")
        self._pending: list[tuple[ExecutionRecord, ExecutionEvent]] = []
        self._writer: asyncio.Task[None] | None = None
        self._save_script = client.register_script(_SAVE)
        self._active = prefix + "active"
        self.lease = lease
        # Whether this process's runs hold leases (arq workers' do not: arq retries their jobs).
        self.leases = lease > 0
        self.cancel_wait = cancel_wait
        self._token = uuid.uuid4().hex  # this process, as the owner written in its leases
        self._owned: set[str] = set()
        self._handed_over: set[str] = set()  # owned runs already handed to on_cancel_request
        self._keeper: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Stops a run of this process (a cancel request, or its record ended elsewhere).
        self.on_cancel_request: Callable[[str], Awaitable[object]] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        if self.lease > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        await self.flush_published()
        tasks = [t for t in (self._keeper, self._sweeper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()

    async def mark_interrupted(self, owner: str | None = None) -> int:
        """Nothing: the store is shared, so a starting instance cannot tell a run another live
        instance (or worker) is executing from one orphaned by a crash. Runs owned by a worker
        are recovered by arq's retry instead."""
        return 0

    # -- records --------------------------------------------------------------------------
    def _key(self, execution_id: str) -> str:
        return self._prefix + "exec:" + execution_id

    def _events_key(self, execution_id: str) -> str:
        return self._prefix + "events:" + execution_id

    def _lease_key(self, execution_id: str) -> str:
        return self._prefix + "lease:" + execution_id

    def _cancel_key(self, execution_id: str) -> str:
        return self._prefix + "cancel:" + execution_id

    async def save(
        self, record: ExecutionRecord, *, durable: bool = False, claim: bool = True
    ) -> None:
        """Write ``record`` unless it is finished with another status already (first final
        status wins). A queued or running record saved with ``claim`` is a run of this process
        (see the class); ``claim=False`` for a run this process only queues for others."""
        active = record.status not in TERMINAL
        lease_ms = int(self.lease * 1000) if active and claim and self.leases else 0
        written = await self._write(record, lease_ms)
        if active and claim and written == 1:
            self._owned.add(record.id)
            if self._keeper is None or self._keeper.done():
                self._keeper = asyncio.get_running_loop().create_task(self._keep_owned())
        elif record.id in self._owned and (not active or written == 0):
            if written == 0 and active:  # ended elsewhere (cancelled while queued, swept)
                self._hand_over(record.id)
            self._owned.discard(record.id)
            self._handed_over.discard(record.id)

    async def _write(
        self,
        record: ExecutionRecord,
        lease_ms: int = 0,
        *,
        expect: str = "",
        unleased: bool = False,
    ) -> int:
        execution_id = record.id
        with self._guard:
            return int(
                await self._save_script(
                    keys=[
                        self._key(execution_id),
                        self._index,
                        self._active,
                        self._lease_key(execution_id),
                    ],
                    args=[
                        _dump_record(record),
                        repr(record.created_at),
                        execution_id,
                        record.status,
                        lease_ms,
                        self._token,
                        expect,
                        "1" if unleased else "0",
                    ],
                )
            )

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        with self._guard:
            raw = await self._client.get(self._key(execution_id))
        return None if raw is None else _load_record(raw)

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        visible_to: str | Everyone | None = EVERYONE,
        max_value_bytes: int | None = None,
    ) -> tuple[builtins.list[ExecutionRecord], str | None]:
        check_list_args(status, limit)
        after = None if cursor is None else decode_cursor(cursor)
        top: Any = "+inf" if after is None else after[0]
        found: builtins.list[ExecutionRecord] = []
        batch = max(limit + 1, 100)
        offset = 0
        with self._guard:
            while len(found) <= limit:
                ids = await self._client.zrevrangebyscore(
                    self._index, top, "-inf", start=offset, num=batch
                )
                if not ids:
                    break
                offset += len(ids)
                keys = [self._key(i.decode()) for i in ids]
                for group in await self._fetch_groups(keys, max_value_bytes):
                    for raw in await self._client.mget(group):
                        if raw is None:
                            continue
                        r = _load_record(raw)
                        if after is not None and (r.created_at, r.id) >= after:
                            continue
                        if matches(r, workflow, status, None, visible_to):
                            found.append(summarise(r, max_value_bytes))
        page = found[:limit]
        if len(found) <= limit:
            return page, None
        return page, encode_cursor(page[-1].created_at, page[-1].id)

    async def _fetch_groups(
        self, keys: builtins.list[str], max_value_bytes: int | None
    ) -> builtins.list[builtins.list[str]]:
        """``keys`` in groups of at most :data:`_FETCH_BYTES` (by STRLEN), so that a page of
        huge records is read a few at a time and summarised, never held all at once."""
        if max_value_bytes is None:
            return [keys]
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.strlen(key)
            sizes = await pipe.execute()
        groups: builtins.list[builtins.list[str]] = [[]]
        total = 0
        for key, size in zip(keys, sizes, strict=True):
            if groups[-1] and total + size > _FETCH_BYTES:
                groups.append([])
                total = 0
            groups[-1].append(key)
            total += size
        return groups

    async def purge(self, *, max_age: float | None = None, max_count: int | None = None) -> int:
        cutoff = None if max_age is None else self._clock() - max_age
        doomed: set[str] = set()
        with self._guard:
            # Created before the cutoff: the only ones that can have finished before it.
            aged: builtins.list[bytes] = []
            if cutoff is not None:
                aged = await self._client.zrangebyscore(self._index, "-inf", cutoff)
            beyond: set[bytes] = set()
            if max_count is not None:
                beyond = set(await self._client.zrevrange(self._index, max_count, -1))
            candidates = builtins.list(dict.fromkeys([*aged, *beyond]))
            for chunk_start in range(0, len(candidates), 500):
                chunk = candidates[chunk_start : chunk_start + 500]
                raws = await self._client.mget([self._key(i.decode()) for i in chunk])
                for member, raw in zip(chunk, raws, strict=True):
                    execution_id = member.decode()
                    if raw is None:  # an index entry whose record is gone
                        doomed.add(execution_id)
                        continue
                    r = _load_record(raw)
                    finished = r.finished_at
                    old = cutoff is not None and finished is not None and finished < cutoff
                    if r.status in TERMINAL and (old or member in beyond):
                        doomed.add(execution_id)
            await self._delete(doomed)
        return len(doomed)

    async def _delete(self, ids: set[str]) -> None:
        if not ids:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for execution_id in ids:
                pipe.delete(self._key(execution_id), self._events_key(execution_id))
            pipe.zrem(self._index, *ids)
            await pipe.execute()

    # -- events ---------------------------------------------------------------------------
    async def add_events(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        if not events:
            return
        with self._guard:
            await self._add_events(keys=[self._events_key(execution_id)], args=_event_args(events))

    async def events(self, execution_id: str, after_seq: int = 0) -> builtins.list[ExecutionEvent]:
        with self._guard:
            entries = await self._client.xrange(
                self._events_key(execution_id), f"{max(after_seq, 0) + 1}-0", "+"
            )
        return _parse_entries(entries)

    def publish(self, record: ExecutionRecord, event: ExecutionEvent) -> None:
        """Queue ``event`` (and a snapshot of ``record``) for the writer; never blocks the run."""
        self._pending.append((record.copy(), event))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_published())

    async def _write_published(self) -> None:
        """Write queued events in order, one pipeline per batch; retries while Redis is down."""
        while self._pending:
            batch, self._pending = self._pending, []
            latest: dict[str, ExecutionRecord] = {}
            grouped: dict[str, builtins.list[ExecutionEvent]] = {}
            for record, event in batch:
                latest[record.id] = record
                grouped.setdefault(record.id, []).append(event)
            try:
                for record in latest.values():
                    await self.save(record)
                for execution_id, events in grouped.items():
                    await self.add_events(execution_id, events)
            except NexusError as exc:
                log.warning("cannot publish events: %s; retrying", exc.message)
                self._pending = batch + self._pending
                await asyncio.sleep(0.2)

    async def flush_published(self) -> None:
        """Wait until every published event is written (the runtime's final save follows it)."""
        writer = self._writer
        if writer is not None and not writer.done():
            await asyncio.shield(writer)

    async def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        """Events after ``after_seq``, live, until the run (on any instance) has ended."""
        key = self._events_key(execution_id)
        last = f"{max(after_seq, 0)}-0"
        while True:
            with self._guard:
                reply = await self._client.xread({key: last}, count=100, block=self._block_ms)
            events = _parse_entries(reply[0][1]) if reply else []
            for event in events:
                yield event
            if events:
                last = f"{events[-1].seq}-0"
                if events[-1].type not in _END_EVENTS:
                    continue
            record = await self.get(execution_id)
            if record is None or record.status in TERMINAL:
                for event in await self.events(execution_id, int(last.split("-")[0])):
                    yield event
                return

    @property
    def connection_pool(self) -> Any:
        """The client's connection pool (the arq executor enqueues through it)."""
        return self._client.connection_pool

    # -- cancel requests (runs owned by another instance or a worker) ----------------------
    async def request_cancel(self, execution_id: str) -> bool:
        """Ask the process that runs ``execution_id`` to cancel it, and wait up to
        ``cancel_wait`` seconds for its acknowledgement: the run's final save.

        True when the run ended (cancelled, or finished or swept meanwhile: the record says
        which) or the request is placed and still pending (the owner did not answer in time;
        it acts on the request when it sees it). A run still queued for a worker is cancelled
        here (the worker skips it); a run whose owner died is marked interrupted here.
        """
        if execution_id in self._owned:
            return False  # this process's own run: the service found no way to cancel it
        record = await self.get(execution_id)
        if record is None or record.status in TERMINAL:
            return False
        with self._guard:
            await self._client.set(self._cancel_key(execution_id), b"1", ex=3600)
            leased = await self._client.exists(self._lease_key(execution_id))
            claimed = await self._client.sismember(self._active, execution_id)  # type: ignore[misc]
        if record.status == "queued" and not claimed:  # in a worker queue: its log ends here
            if await self._end(record, Cancelled(), expect="queued"):
                return True
        elif claimed and not leased:  # its owner died: what the sweeper would do
            await self._end(record, Interrupted(), expect=record.status, unleased=True)
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cancel_wait
        while loop.time() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
            current = await self.get(execution_id)
            if current is None or current.status in TERMINAL:
                break
        return True

    async def cancel_requested(self, execution_id: str) -> bool:
        with self._guard:
            return bool(await self._client.exists(self._cancel_key(execution_id)))

    async def _end(
        self,
        record: ExecutionRecord,
        error: Cancelled | Interrupted,
        *,
        expect: str,
        unleased: bool = False,
    ) -> bool:
        """End a run nobody here executes: its record (if still ``expect`` and, with
        ``unleased``, still without a lease) and its log's last event. False if it changed."""
        ended = record.copy()
        ended.status = "cancelled" if isinstance(error, Cancelled) else "interrupted"
        ended.finished_at = self._clock()
        ended.error = error.to_dict()
        if await self._write(ended, expect=expect, unleased=unleased) != 1:
            return False
        events = await self.events(record.id)
        seq = events[-1].seq + 1 if events else 1
        envelope = error_envelope(error, record.id, ended.finished_at)
        last = ExecutionEvent(seq, "error", envelope, ended.finished_at)
        await self.add_events(record.id, [last])
        return True

    # -- owned runs: cancel requests and leases; the sweeper of dead owners' runs ----------
    def disown(self, execution_id: str) -> None:
        """This process no longer runs ``execution_id`` (e.g. queued again for a retry)."""
        self._owned.discard(execution_id)
        self._handed_over.discard(execution_id)

    def _hand_over(self, execution_id: str) -> None:
        """Stop a run of this process (once): :attr:`on_cancel_request` in a task."""
        callback = self.on_cancel_request
        if callback is None or execution_id in self._handed_over:
            return
        self._handed_over.add(execution_id)

        async def call() -> None:
            try:
                await callback(execution_id)
            except Exception:
                log.exception("cancelling %s on request failed", execution_id)

        task = asyncio.get_running_loop().create_task(call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_owned(self) -> None:
        """While this process owns runs: watch their cancel keys, renew their leases."""
        loop = asyncio.get_running_loop()
        renew_every = self.lease / 3
        renewed = loop.time()
        while self._owned:
            await asyncio.sleep(WATCH_INTERVAL)
            ids = [i for i in self._owned if i not in self._handed_over]
            if not ids:
                continue
            renew = self.leases and loop.time() - renewed >= renew_every
            try:
                with self._guard:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for execution_id in ids:
                            pipe.exists(self._cancel_key(execution_id))
                        if renew:
                            for execution_id in ids:
                                pipe.pexpire(self._lease_key(execution_id), int(self.lease * 1000))
                        replies = await pipe.execute()
            except NexusError as exc:  # Redis blip: keep running, try again
                log.warning("cannot watch this process's runs: %s", exc.message)
                continue
            if renew:
                renewed = loop.time()
            for i, execution_id in enumerate(ids):
                if replies[i]:
                    self._hand_over(execution_id)
                elif renew and not replies[len(ids) + i] and execution_id in self._owned:
                    log.warning("the lease of run %s had expired; it was swept", execution_id)
                    self._hand_over(execution_id)  # its record reads interrupted: stop it

    async def _sweep_forever(self) -> None:
        interval = max(self.lease / 2, WATCH_INTERVAL)
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.sweep()
            except NexusError as exc:
                log.warning("cannot sweep runs of dead instances: %s", exc.message)
                continue
            if swept:
                log.warning("%d runs of an instance that stopped are now interrupted", swept)

    async def sweep(self) -> int:
        """Mark ``interrupted`` the runs in ``active`` whose lease expired; returns how many."""
        with self._guard:
            raw: set[bytes] = await self._client.smembers(self._active)  # type: ignore[misc]
            members = [m.decode() for m in raw]
            if not members:
                return 0
            async with self._client.pipeline(transaction=False) as pipe:
                for execution_id in members:
                    pipe.exists(self._lease_key(execution_id))
                leased = await pipe.execute()
        swept = 0
        for execution_id, alive in zip(members, leased, strict=True):
            if alive:
                continue
            record = await self.get(execution_id)
            if record is None or record.status in TERMINAL:
                with self._guard:
                    await self._client.srem(self._active, execution_id)  # type: ignore[misc]
                continue
            if await self._end(record, Interrupted(), expect=record.status, unleased=True):
                swept += 1
        return swept

    # -- idempotency ----------------------------------------------------------------------
    async def get_idempotency(self, key: str) -> IdempotencyEntry | None:
        with self._guard:
            raw = await self._client.get(self._prefix + "idem:" + key)
        if raw is None:
            return None
        head, _, body = raw.partition(b"\n")
        request_hash, execution_id, status, expires_at = orjson.loads(head)
        if expires_at <= self._clock():
            return None
        return IdempotencyEntry(key, request_hash, execution_id, status, body, expires_at)

    async def put_idempotency(self, entry: IdempotencyEntry) -> bool:
        now = self._clock()
        ttl_ms = int((entry.expires_at - now) * 1000)
        if ttl_ms <= 0:
            return True  # already expired: nothing to remember
        head = orjson.dumps(
            [entry.request_hash, entry.execution_id, entry.status, entry.expires_at]
        )
        with self._guard:
            stored = await self._put_idempotency(
                keys=[self._prefix + "idem:" + entry.key],
                args=[head + b"\n" + entry.body, ttl_ms, repr(now)],
            )
        return bool(stored)

    async def settle_idempotency(self, entry: IdempotencyEntry) -> bool:
        now = self._clock()
        ttl_ms = int((entry.expires_at - now) * 1000)
        value = b""
        if ttl_ms > 0:  # else: nothing to remember, the claim just goes
            head = orjson.dumps(
                [entry.request_hash, entry.execution_id, entry.status, entry.expires_at]
            )
            value = head + b"\n" + entry.body
        with self._guard:
            done = await self._settle_idempotency(
                keys=[self._prefix + "idem:" + entry.key],
                args=[value, max(ttl_ms, 1), entry.execution_id],
            )
        return bool(done)

    async def release_idempotency(self, key: str, execution_id: str) -> bool:
        with self._guard:
            done = await self._settle_idempotency(
                keys=[self._prefix + "idem:" + key], args=[b"", 1, execution_id]
            )
        return bool(done)

    async def ping(self) -> None:
        with self._guard:
            await self._client.ping()
