"""The contract of :class:`~nexus_aio.stores.executions.ExecutionStore`: records, event logs,
idempotency keys, retention, and what a store shares with other processes."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from nexus_aio.errors import ValidationError
from nexus_aio.stores.executions import (
    INTERRUPTED_ERROR,
    TERMINAL,
    ExecutionEvent,
    ExecutionRecord,
    ExecutionStore,
    IdempotencyEntry,
    encode_cursor,
)
from nexus_aio.testing.contracts.base import T0, ManualClock, StoreContract, async_tests

__all__ = ["ExecutionStoreContract"]

_WAIT = 10.0  # seconds any one wait of the contract may take before it counts as a hang


def record(
    n: int,
    *,
    workflow: str = "wf",
    status: str = "succeeded",
    created_at: float | None = None,
    finished_at: float | None = None,
) -> ExecutionRecord:
    """Record number ``n``: id ``ex-000n``, created at ``T0 + n`` unless told otherwise."""
    return ExecutionRecord(
        id=f"ex-{n:04d}",
        workflow=workflow,
        mode="sync",
        status=status,
        inputs={"n": n},
        created_at=T0 + n if created_at is None else created_at,
        result={"double": 2 * n} if status == "succeeded" else None,
        finished_at=finished_at,
    )


def events(*types: str, start: int = 1) -> list[ExecutionEvent]:
    """Events numbered from ``start``, one per type."""
    return [ExecutionEvent(start + i, t, {"i": start + i}, T0 + i) for i, t in enumerate(types)]


async def all_pages(store: ExecutionStore, limit: int, **filters: Any) -> tuple[list[str], int]:
    """Every id :meth:`ExecutionStore.list` returns, following cursors, and the page count."""
    ids: list[str] = []
    cursor, pages = None, 0
    while True:
        page, cursor = await store.list(limit=limit, cursor=cursor, **filters)
        ids += [r.id for r in page]
        pages += 1
        if cursor is None:
            return ids, pages


class _Opaque:
    """A value JSON cannot hold; its ``str`` is what a serialising store keeps."""

    def __str__(self) -> str:
        return "<opaque>"


def _ended(rec: ExecutionRecord, status: str = "succeeded") -> None:
    rec.status = status
    rec.finished_at = rec.created_at + 1
    rec.error = None if status == "succeeded" else {"type": "X", "message": "m", "details": {}}


@async_tests
class ExecutionStoreContract(StoreContract):
    """Subclass it and provide ``store`` (an opened, empty store; see ``nexus_aio.testing``).

    A saved record is a snapshot of its fields: setting one afterwards is not a write (the values
    it holds, such as ``inputs``, are shared rather than copied: nobody mutates them).

    Declarations:

    * ``marks_interrupted`` (True): ``mark_interrupted()`` ends the queued and running records
      it finds. A store shared by several processes cannot tell an orphaned run from one another
      live process runs, and declares False: its ``mark_interrupted()`` then must change nothing
      and return 0.

    The store's own ``live_events`` selects how runs are followed: events handed to
    ``publish()`` must reach a follower while the run goes on; otherwise ``follow()`` (the
    default polls ``events()``) must still deliver each event once and end with the run.
    """

    marks_interrupted: ClassVar[bool] = True

    # -- records ---------------------------------------------------------------------------------
    async def test_save_then_get_returns_every_field(self, store: ExecutionStore) -> None:
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
            attempts=3,
        )
        await store.save(original)
        assert await store.get("ex-1") == original
        assert await store.get("missing") is None

    async def test_save_keeps_a_snapshot_not_the_live_object(self, store: ExecutionStore) -> None:
        rec = record(1, status="running")
        await store.save(rec)
        rec.status = "succeeded"  # setting a field after save is not a write
        fetched = await store.get(rec.id)
        assert fetched is not None and fetched.status == "running"
        fetched.status = "failed"  # nor is mutating what get() returned
        again = await store.get(rec.id)
        assert again is not None and again.status == "running"

    async def test_save_upserts_the_latest_state(self, store: ExecutionStore) -> None:
        rec = record(1, status="running")
        await store.save(rec, durable=True)
        rec.status, rec.result, rec.finished_at = "succeeded", {"ok": 1}, T0 + 9
        await store.save(rec)
        got = await store.get(rec.id)
        assert got is not None
        assert (got.status, got.result, got.finished_at) == ("succeeded", {"ok": 1}, T0 + 9)
        page, _ = await store.list()
        assert [r.id for r in page] == [rec.id]

    async def test_values_json_cannot_hold_do_not_break_writes(self, store: ExecutionStore) -> None:
        """A workflow may return anything: a write must not fail (the run would never end)."""
        rec = record(1)
        rec.result = {"ints": {1: "a"}, "big": 2**70, "obj": _Opaque()}
        as_json = {"ints": {"1": "a"}, "big": 2**70, "obj": "<opaque>"}
        await store.save(rec, durable=True)
        await store.add_events(rec.id, [ExecutionEvent(1, "complete", rec.result, T0)])
        await store.flush()
        got = await store.get(rec.id)
        assert got is not None and got.result in (rec.result, as_json)
        assert [e.data for e in await store.events(rec.id)] in ([rec.result], [as_json])

    async def test_flush_changes_nothing_reads_return(self, store: ExecutionStore) -> None:
        rec = record(1, status="running")
        await store.save(rec)
        await store.add_events(rec.id, events("start", "chunk"))
        await store.flush()
        await store.flush()  # twice, with nothing pending, is harmless
        assert await store.get(rec.id) == rec
        assert await store.events(rec.id) == events("start", "chunk")

    # -- list ----------------------------------------------------------------------------------
    async def test_list_is_newest_first_with_filters(self, store: ExecutionStore) -> None:
        await store.save(record(1, workflow="a", status="succeeded"))
        await store.save(record(3, workflow="b", status="failed"))
        await store.save(record(2, workflow="a", status="failed"))
        page, cursor = await store.list()
        assert [r.id for r in page] == ["ex-0003", "ex-0002", "ex-0001"]
        assert cursor is None
        assert [r.id for r in (await store.list(workflow="a"))[0]] == ["ex-0002", "ex-0001"]
        assert [r.id for r in (await store.list(status="failed"))[0]] == ["ex-0003", "ex-0002"]
        assert [r.id for r in (await store.list(workflow="a", status="failed"))[0]] == ["ex-0002"]
        assert await store.list(workflow="nope") == ([], None)

    async def test_list_pages_have_no_duplicates_and_no_gaps(self, store: ExecutionStore) -> None:
        # Ties on created_at must still page cleanly: the id breaks them.
        for n in range(23):
            await store.save(record(n, created_at=T0 + n // 4, workflow="even" if n % 2 else "odd"))
        ids, pages = await all_pages(store, limit=5)
        expected = sorted(range(23), key=lambda n: (n // 4, f"ex-{n:04d}"), reverse=True)
        assert ids == [f"ex-{n:04d}" for n in expected]
        assert pages == 5
        even_ids, _ = await all_pages(store, limit=3, workflow="even")
        assert even_ids == [f"ex-{n:04d}" for n in expected if n % 2]

    async def test_list_of_an_exact_multiple_of_limit_ends_without_cursor(
        self, store: ExecutionStore
    ) -> None:
        for n in range(4):
            await store.save(record(n))
        page, cursor = await store.list(limit=2)
        assert [r.id for r in page] == ["ex-0003", "ex-0002"] and cursor is not None
        page, cursor = await store.list(limit=2, cursor=cursor)
        assert [r.id for r in page] == ["ex-0001", "ex-0000"]
        assert cursor is None

    @pytest.mark.parametrize(
        "cursor",
        [
            "not a cursor!",
            "e30",  # {}
            encode_cursor(1.0, "x")[:-3] + "@@@",
            "WzEsMiwzXQ",  # [1,2,3]
            "WyJhIiwiYiJd",  # ["a","b"]
            "WzEsMl0",  # [1,2]: the id is not a string
            "x" * 2000,
        ],
        ids=["text", "object", "truncated", "three-items", "two-strings", "id-number", "too-long"],
    )
    async def test_list_rejects_a_bad_cursor_naming_the_field(
        self, store: ExecutionStore, cursor: str
    ) -> None:
        with pytest.raises(ValidationError) as info:
            await store.list(cursor=cursor)
        assert info.value.status == 400
        assert info.value.details["field"] == "cursor"

    async def test_list_rejects_unknown_status_and_bad_limit(self, store: ExecutionStore) -> None:
        with pytest.raises(ValidationError) as info:
            await store.list(status="exploded")
        assert info.value.details["field"] == "status"
        with pytest.raises(ValidationError) as info:
            await store.list(limit=0)
        assert info.value.details["field"] == "limit"

    async def test_list_visible_to_filters_by_owner_before_the_page_is_cut(
        self, store: ExecutionStore
    ) -> None:
        """The owner filter is part of the query: a page of a caller's history is full even
        when other actors' newer records outnumber it."""
        owners = ["alice", None, "alice", *(["bob"] * 6)]
        for n, owner in enumerate(owners):
            rec = record(n)
            rec.actor = owner
            await store.save(rec)
        await store.flush()
        page, cursor = await store.list(visible_to="alice", limit=3)
        assert [(r.id, r.actor) for r in page] == [
            ("ex-0002", "alice"),
            ("ex-0001", None),
            ("ex-0000", "alice"),
        ]
        assert cursor is None
        anonymous, _ = await store.list(visible_to=None)
        assert [r.id for r in anonymous] == ["ex-0001"]
        everyone, _ = await store.list(limit=100)
        assert len(everyone) == len(owners)
        ids, _ = await all_pages(store, limit=2, visible_to="bob")
        assert ids == [f"ex-{n:04d}" for n in (8, 7, 6, 5, 4, 3, 1)]

    async def test_list_leaves_out_values_above_max_value_bytes_and_names_them(
        self, store: ExecutionStore
    ) -> None:
        big_inputs = {"text": "é" * 3000}  # 6 KB of UTF-8: the bound counts bytes
        small = record(1)
        large = record(2)
        large.inputs = big_inputs
        large.result = ["x" * 100] * 100
        failed = record(3, status="failed")
        failed.error = {"type": "WorkflowExecutionError", "message": "m" * 5000, "details": {}}
        for rec in (small, large, failed):
            await store.save(rec)
        await store.flush()
        page, _ = await store.list(max_value_bytes=4096)
        by_id = {r.id: r for r in page}
        assert by_id["ex-0001"] == small and by_id["ex-0001"].truncated == ()
        short = by_id["ex-0002"]
        assert (short.inputs, short.result, short.truncated) == (None, None, ("inputs", "result"))
        assert short.to_dict()["truncated"] == ["inputs", "result"]
        assert by_id["ex-0003"].error is None and by_id["ex-0003"].truncated == ("error",)
        full = await store.get("ex-0002")
        assert full is not None and full.inputs == big_inputs and full.truncated == ()
        unbounded, _ = await store.list()
        assert {r.id: r for r in unbounded}["ex-0002"] == large

    # -- events --------------------------------------------------------------------------------
    async def test_events_keep_order_and_honour_after_seq(self, store: ExecutionStore) -> None:
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
        assert got[2] == ExecutionEvent(3, "chunk", {"i": 3}, T0)
        assert [e.seq for e in await store.events("ex-1", after_seq=2)] == [3, 4]
        assert await store.events("ex-1", after_seq=4) == []
        assert await store.events("unknown") == []

    async def test_adding_a_whole_log_again_does_not_duplicate(self, store: ExecutionStore) -> None:
        log = events("start", "chunk")
        await store.add_events("ex-1", log)
        await store.add_events("ex-1", log)
        await store.add_events("ex-1", [*log, *events("complete", start=3)])
        await store.add_events("ex-1", [])
        await store.flush()
        await store.add_events("ex-1", [*log, *events("complete", start=3)])  # after a flush too
        assert [e.seq for e in await store.events("ex-1")] == [1, 2, 3]

    # -- startup and retention -----------------------------------------------------------------
    async def test_mark_interrupted_ends_queued_and_running_records(
        self, store: ExecutionStore, clock: ManualClock
    ) -> None:
        await store.save(record(1, status="queued"))
        await store.save(record(2, status="running"), durable=True)
        await store.save(record(3, status="succeeded", finished_at=T0 + 3))
        clock.now = T0 + 100
        if not self.marks_interrupted:  # declared: a shared store leaves runs to their owners
            assert await store.mark_interrupted() == 0
            assert [r.status for r in (await store.list())[0]] == ["succeeded", "running", "queued"]
            return
        assert await store.mark_interrupted() == 2
        for n in (1, 2):
            got = await store.get(f"ex-{n:04d}")
            assert got is not None
            assert got.status == "interrupted"
            assert got.error == INTERRUPTED_ERROR
            assert got.finished_at == T0 + 100
        done = await store.get("ex-0003")
        assert done == record(3, status="succeeded", finished_at=T0 + 3)
        assert await store.mark_interrupted() == 0

    async def test_mark_interrupted_of_an_owner_ends_only_that_processs_runs(
        self, store: ExecutionStore, clock: ManualClock
    ) -> None:
        dead, alive = record(1, status="running"), record(2, status="running")
        dead.owner, alive.owner = "host:111", "host:222"
        await store.save(dead, durable=True)
        await store.save(alive, durable=True)
        clock.now = T0 + 100
        if not self.marks_interrupted:
            assert await store.mark_interrupted(owner="host:111") == 0
            return
        assert await store.mark_interrupted(owner="host:111") == 1
        got_dead, got_alive = await store.get("ex-0001"), await store.get("ex-0002")
        assert got_dead is not None and got_dead.status == "interrupted"
        assert got_alive is not None and (got_alive.status, got_alive.owner) == (
            "running",
            "host:222",
        )

    async def test_purge_by_age_deletes_old_finished_records_with_their_events(
        self, store: ExecutionStore, clock: ManualClock
    ) -> None:
        await store.save(record(1, finished_at=T0 + 10))
        await store.save(record(2, finished_at=T0 + 500))
        await store.save(record(3, status="running"))  # unfinished: never purged
        await store.save(record(-5, status="queued", created_at=T0 - 9000))  # nor this
        await store.add_events("ex-0001", events("start", "complete"))
        clock.now = T0 + 1000
        assert await store.purge(max_age=600) == 1
        assert await store.get("ex-0001") is None
        assert await store.events("ex-0001") == []
        assert {r.id for r in (await store.list())[0]} == {"ex-0002", "ex-0003", "ex--005"}
        assert await store.purge(max_age=600) == 0

    async def test_purge_by_count_keeps_the_newest_and_every_active_record(
        self, store: ExecutionStore
    ) -> None:
        for n in range(6):
            await store.save(record(n, finished_at=T0 + n))
        await store.save(record(-1, status="running", created_at=T0 - 50))  # oldest, but active
        await store.add_events("ex-0000", events("start", "complete"))
        assert await store.purge(max_count=3) == 3
        ids = [r.id for r in (await store.list())[0]]
        assert ids == ["ex-0005", "ex-0004", "ex-0003", "ex--001"]
        assert await store.events("ex-0000") == []
        assert await store.purge(max_count=3) == 0
        assert await store.purge() == 0  # no limit given: nothing to do

    async def test_purge_with_both_limits_deletes_only_what_one_of_them_condemns(
        self, store: ExecutionStore, clock: ManualClock
    ) -> None:
        clock.now = T0 + 1000  # max_age=600: finished before T0 + 400 is old
        await store.save(record(1, created_at=T0 + 50, finished_at=T0 + 60))  # old
        await store.save(record(2, created_at=T0 + 100, finished_at=T0 + 900))  # long run, recent
        await store.save(record(3, created_at=T0 + 200, finished_at=T0 + 950))
        await store.save(record(4, status="running", created_at=T0 + 10))
        assert await store.purge(max_age=600, max_count=10) == 1
        assert [r.id for r in (await store.list())[0]] == ["ex-0003", "ex-0002", "ex-0004"]
        assert await store.purge(max_age=600, max_count=1) == 1  # ex-0002: beyond the newest one
        assert [r.id for r in (await store.list())[0]] == ["ex-0003", "ex-0004"]

    # -- idempotency ---------------------------------------------------------------------------
    async def test_idempotency_put_get_and_first_writer_wins(self, store: ExecutionStore) -> None:
        entry = IdempotencyEntry("actor:alice:k1", "hash-1", "ex-1", 200, b'{"ok":\n1}', T0 + 60)
        assert await store.get_idempotency(entry.key) is None
        assert await store.put_idempotency(entry) is True
        assert await store.get_idempotency(entry.key) == entry
        other = IdempotencyEntry(entry.key, "hash-2", "ex-2", 202, b"{}", T0 + 120)
        assert await store.put_idempotency(other) is False
        assert await store.get_idempotency(entry.key) == entry
        assert await store.get_idempotency("actor:alice:other") is None

    async def test_idempotency_entry_expires_and_frees_its_key(
        self, store: ExecutionStore, clock: ManualClock
    ) -> None:
        entry = IdempotencyEntry("k", "hash-1", "ex-1", 200, b"\x00body", T0 + 60)
        assert await store.put_idempotency(entry) is True
        clock.now = T0 + 59.5
        assert await store.get_idempotency("k") == entry
        clock.now = T0 + 60
        assert await store.get_idempotency("k") is None
        later = IdempotencyEntry("k", "hash-2", "ex-2", 202, b"{}", T0 + 120)
        assert await store.put_idempotency(later) is True
        assert await store.get_idempotency("k") == later

    async def test_idempotency_put_is_atomic(self, store: ExecutionStore) -> None:
        entries = [IdempotencyEntry("k", f"h{i}", f"ex-{i}", 200, b"", T0 + 60) for i in range(20)]
        won = await asyncio.gather(*(store.put_idempotency(e) for e in entries))
        assert sum(won) == 1
        assert await store.get_idempotency("k") == entries[won.index(True)]

    async def test_idempotency_settle_replaces_only_its_own_claim(
        self, store: ExecutionStore
    ) -> None:
        claim = IdempotencyEntry("k", "hash-1", "ex-1", 0, b"", T0 + 60)
        assert await store.put_idempotency(claim) is True
        stranger = IdempotencyEntry("k", "hash-1", "ex-2", 200, b"{}", T0 + 600)
        assert await store.settle_idempotency(stranger) is False
        assert await store.get_idempotency("k") == claim
        settled = IdempotencyEntry("k", "hash-1", "ex-1", 200, b"\x00body", T0 + 600)
        assert await store.settle_idempotency(settled) is True
        assert await store.get_idempotency("k") == settled
        assert (
            await store.settle_idempotency(
                IdempotencyEntry("absent", "h", "ex-1", 200, b"", T0 + 60)
            )
            is False
        )
        assert await store.get_idempotency("absent") is None

    async def test_idempotency_release_frees_only_its_own_claim(
        self, store: ExecutionStore
    ) -> None:
        claim = IdempotencyEntry("k", "hash-1", "ex-1", 0, b"", T0 + 60)
        assert await store.put_idempotency(claim) is True
        assert await store.release_idempotency("k", "ex-2") is False
        assert await store.get_idempotency("k") == claim
        assert await store.release_idempotency("k", "ex-1") is True
        assert await store.get_idempotency("k") is None
        assert await store.release_idempotency("k", "ex-1") is False
        again = IdempotencyEntry("k", "hash-1", "ex-3", 0, b"", T0 + 60)
        assert await store.put_idempotency(again) is True

    # -- health --------------------------------------------------------------------------------
    async def test_ping_succeeds_on_a_healthy_store(self, store: ExecutionStore) -> None:
        await store.ping()

    # -- following a run owned elsewhere -------------------------------------------------------
    async def _emit(
        self, store: ExecutionStore, rec: ExecutionRecord, event: ExecutionEvent
    ) -> None:
        """Hand ``event`` over as the runtime does: published live, else added to the log."""
        if store.live_events:
            store.publish(rec, event)
        else:
            await store.add_events(rec.id, [event])

    async def test_follow_yields_events_after_after_seq_until_the_run_ends(
        self, store: ExecutionStore
    ) -> None:
        store.follow_poll = 0.01  # the default follow polls; keep the test quick
        rec = record(1, status="running")
        log = events("start", "chunk", "chunk", "complete")
        await store.save(rec, durable=True)
        await store.add_events(rec.id, log[:2])
        got: list[ExecutionEvent] = []
        seen = {event.seq: asyncio.Event() for event in log}

        async def follower() -> None:
            async for event in store.follow(rec.id, after_seq=1):
                got.append(event)
                if event.seq in seen:
                    seen[event.seq].set()

        task = asyncio.create_task(follower())
        try:
            async with asyncio.timeout(_WAIT):
                await seen[2].wait()  # what was stored before
                await self._emit(store, rec, log[2])
                await seen[3].wait()  # arrives while the run goes on
                assert not task.done()
                _ended(rec)  # the runtime finishes the record, pushes the last event, saves
                await self._emit(store, rec, log[3])
                await store.add_events(rec.id, log)
                await store.save(rec, durable=True)
                await task  # ends by itself once the record is terminal
        finally:
            task.cancel()
        assert got == log[1:]

    async def test_follow_of_a_finished_run_yields_its_events_and_ends(
        self, store: ExecutionStore
    ) -> None:
        store.follow_poll = 0.01
        rec = record(1)
        await store.add_events(rec.id, events("start", "chunk", "complete"))
        await store.save(rec, durable=True)
        async with asyncio.timeout(_WAIT):
            assert [e.seq async for e in store.follow(rec.id)] == [1, 2, 3]
            assert [e.seq async for e in store.follow(rec.id, after_seq=2)] == [3]
            assert [e async for e in store.follow(rec.id, after_seq=3)] == []

    async def test_follow_of_an_unknown_execution_ends_without_events(
        self, store: ExecutionStore
    ) -> None:
        store.follow_poll = 0.01
        async with asyncio.timeout(_WAIT):
            assert [e async for e in store.follow("missing")] == []

    async def test_publish_then_storing_the_log_keeps_each_event_once(
        self, store: ExecutionStore
    ) -> None:
        rec = record(1, status="running")
        await store.save(rec, durable=True)
        store.publish(rec, ExecutionEvent(1, "start", {}, T0))
        await store.add_events(rec.id, events("start"))  # what the runtime stores at the end
        assert [e.seq for e in await store.events(rec.id)] == [1]

    # -- cancel requests -------------------------------------------------------------------------
    async def test_request_cancel_of_unknown_or_finished_runs_places_nothing(
        self, store: ExecutionStore
    ) -> None:
        assert await store.request_cancel("missing") is False
        assert await store.cancel_requested("missing") is False
        done = record(1, status="failed", finished_at=T0 + 2)
        await store.save(done, durable=True)
        assert await store.request_cancel(done.id) is False
        assert await store.cancel_requested(done.id) is False
        assert await store.get(done.id) == done

    @pytest.mark.parametrize("status", ["queued", "running"])
    async def test_request_cancel_reaches_the_owner_of_an_active_run(
        self, store: ExecutionStore, status: str
    ) -> None:
        """Consistency: True means the run ended or its owner was told; False means neither."""
        rec = record(1, status=status)
        await store.save(rec, durable=True)
        asker = asyncio.create_task(store.request_cancel(rec.id))
        told = False
        try:
            async with asyncio.timeout(_WAIT):
                while not asker.done():  # the owner polls, as a runtime elsewhere does
                    if await store.cancel_requested(rec.id):
                        told = True
                        current = await store.get(rec.id)
                        if current is not None and current.status not in TERMINAL:
                            _ended(rec, "cancelled")
                            await store.save(rec, durable=True)
                        break
                    await asyncio.sleep(0.01)
                placed = await asker
        finally:
            asker.cancel()
        got = await store.get(rec.id)
        assert got is not None
        if placed:
            assert told or await store.cancel_requested(rec.id)
            assert got.status in TERMINAL
        else:
            assert not told and not await store.cancel_requested(rec.id)
            assert got == rec
