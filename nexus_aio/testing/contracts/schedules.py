"""The contract of :class:`~nexus_aio.stores.schedules.ScheduleStore`: definitions round-trip,
due schedules come out earliest first, and a tick is claimed by exactly one caller."""

from __future__ import annotations

import asyncio

from nexus_aio.stores.schedules import Schedule, ScheduleStore
from nexus_aio.testing.contracts.base import T0, StoreContract, async_tests

__all__ = ["ScheduleStoreContract"]


def schedule(schedule_id: str = "sch-1", next_run: float = T0 + 60, **kw: object) -> Schedule:
    fields: dict[str, object] = {"cron": "* * * * *", "created_at": T0, "updated_at": T0}
    fields.update(kw)
    return Schedule(schedule_id, "sum", next_run, **fields)  # type: ignore[arg-type]


@async_tests
class ScheduleStoreContract(StoreContract):
    """Subclass it and provide ``store`` (an opened, empty schedule store)."""

    async def test_a_schedule_round_trips(self, store: ScheduleStore) -> None:
        original = schedule(
            inputs={"a": 1, "b": [2, "é"]},
            timezone="Europe/Paris",
            catchup="one",
            webhook="https://example.com/h",
            session_id="s-1",
            actor="alice",
            declared=True,
        )
        await store.put(original)
        assert await store.get("sch-1") == original
        assert await store.get("nope") is None

    async def test_list_and_count_hold_every_schedule_oldest_first(
        self, store: ScheduleStore
    ) -> None:
        await store.put(schedule("sch-b", created_at=T0 + 2))
        await store.put(schedule("sch-a", created_at=T0 + 1))
        assert [s.id for s in await store.all()] == ["sch-a", "sch-b"]
        assert await store.count() == 2

    async def test_delete_removes_it_once(self, store: ScheduleStore) -> None:
        await store.put(schedule())
        assert await store.delete("sch-1") is True
        assert await store.delete("sch-1") is False
        assert await store.get("sch-1") is None

    async def test_due_schedules_come_earliest_first_without_paused_ones(
        self, store: ScheduleStore
    ) -> None:
        await store.put(schedule("sch-late", next_run=T0 + 5))
        await store.put(schedule("sch-early", next_run=T0 + 1))
        await store.put(schedule("sch-paused", next_run=T0, paused=True))
        await store.put(schedule("sch-future", next_run=T0 + 100))
        assert [s.id for s in await store.due(T0 + 10, 10)] == ["sch-early", "sch-late"]
        assert [s.id for s in await store.due(T0 + 10, 1)] == ["sch-early"]
        assert await store.next_due() == T0 + 1

    async def test_next_due_is_none_without_active_schedules(self, store: ScheduleStore) -> None:
        assert await store.next_due() is None
        await store.put(schedule(paused=True))
        assert await store.next_due() is None

    async def test_advance_claims_a_tick_once(self, store: ScheduleStore) -> None:
        await store.put(schedule(next_run=T0))
        results = await asyncio.gather(*(store.advance("sch-1", T0, T0 + 60, T0) for _ in range(5)))
        assert results.count(True) == 1
        stored = await store.get("sch-1")
        assert stored is not None and (stored.next_run, stored.last_run) == (T0 + 60, T0)

    async def test_advance_of_a_stale_or_paused_schedule_does_nothing(
        self, store: ScheduleStore
    ) -> None:
        await store.put(schedule(next_run=T0))
        assert await store.advance("sch-1", T0 - 1, T0 + 60, T0) is False
        await store.put(schedule(next_run=T0, paused=True))
        assert await store.advance("sch-1", T0, T0 + 60, T0) is False
        assert await store.advance("nope", T0, T0 + 60, T0) is False

    async def test_advance_without_firing_keeps_the_last_run(self, store: ScheduleStore) -> None:
        await store.put(schedule(next_run=T0, last_run=T0 - 60))
        assert await store.advance("sch-1", T0, T0 + 60, None) is True
        stored = await store.get("sch-1")
        assert stored is not None and stored.last_run == T0 - 60

    async def test_note_run_records_the_execution_or_the_error(self, store: ScheduleStore) -> None:
        await store.put(schedule())
        await store.note_run("sch-1", "wf-1", None)
        stored = await store.get("sch-1")
        assert stored is not None and (stored.last_execution_id, stored.last_error) == (
            "wf-1",
            None,
        )
        await store.note_run("sch-1", None, "queue full")
        stored = await store.get("sch-1")
        assert stored is not None and (stored.last_execution_id, stored.last_error) == (
            None,
            "queue full",
        )
