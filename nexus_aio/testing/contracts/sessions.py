"""The contract of :class:`~nexus_aio.stores.sessions.SessionStore`: state, sliding expiry,
housekeeping and the session lock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexus_aio.errors import ServiceUnavailable, ValidationError
from nexus_aio.stores.sessions import Session, SessionStore
from nexus_aio.testing.contracts.base import T0, ManualClock, StoreContract, async_tests

__all__ = ["SessionExpiryContract", "SessionStoreContract"]

_WAIT = 10.0  # seconds any one wait of the contract may take before it counts as a hang


def new_session(session_id: str = "s1", state: Any = None, actor: str | None = None) -> Session:
    """A session as the runtime creates one, before its first save."""
    return Session(session_id, {"n": 1} if state is None else state, T0, T0, T0, actor)


@async_tests
class SessionStoreContract(StoreContract):
    """Subclass it and provide ``store`` (an opened, empty store; see ``nexus_aio.testing``).

    The cases work with the store's own ``ttl`` (any positive value). The cases that move the
    ``clock`` past an expiry are in :class:`SessionExpiryContract`, which a store reading time
    from the ``clock`` fixture also subclasses; a store that expires sessions by a server's
    clock (Redis TTLs) tests expiry in real time instead and declares ``expiry_tolerance``: how
    far the ``expires_at`` read back may be from the computed one. The store's
    ``cross_process_lock`` selects what ``lock()`` must do: exclude a second holder (True) or
    hold nothing (False, the default). ``max_sessions`` is set on the store by the capacity
    case (the attribute every store reads when :meth:`SessionStore.check_capacity` runs).
    """

    #: Seconds the ``expires_at`` read back may differ from the computed one (a server's clock).
    expiry_tolerance: float = 0.0

    def _expiry_of(self, session: Session, expected: float) -> None:
        assert abs(session.expires_at - expected) <= self.expiry_tolerance

    # -- state -------------------------------------------------------------------------------
    async def test_get_of_an_unknown_session_is_none(self, store: SessionStore) -> None:
        assert await store.get("nope") is None

    async def test_save_then_get_round_trips(self, store: SessionStore, clock: ManualClock) -> None:
        clock.now = T0 + 5
        session = new_session(state={"cart": [1, 2.5], "user": {"name": "é"}}, actor="alice")
        await store.save(session)
        assert (session.updated_at, session.expires_at) == (T0 + 5, T0 + 5 + store.ttl)
        loaded = await store.get("s1")
        assert loaded is not None
        assert (loaded.id, loaded.state, loaded.actor) == (
            "s1",
            {"cart": [1, 2.5], "user": {"name": "é"}},
            "alice",
        )
        assert (loaded.created_at, loaded.updated_at) == (T0, T0 + 5)
        self._expiry_of(loaded, T0 + 5 + store.ttl)

    async def test_saved_state_is_a_snapshot(self, store: SessionStore) -> None:
        session = new_session(state={"items": [1]})
        await store.save(session)
        session.state["items"].append(2)  # mutating after save is not a write
        loaded = await store.get("s1")
        assert loaded is not None and loaded.state == {"items": [1]}
        loaded.state["items"].append(3)  # nor is mutating what get() returned
        again = await store.get("s1")
        assert again is not None and again.state == {"items": [1]}

    async def test_save_overwrites_state(self, store: SessionStore) -> None:
        await store.save(new_session(state={"step": 1}))
        await store.save(new_session(state={"step": 2}))
        loaded = await store.get("s1")
        assert loaded is not None and loaded.state == {"step": 2}

    @pytest.mark.parametrize(
        "state",
        [{"obj": object()}, {"when": {1, 2}}, {1: "int key"}, ["not", "a", "dict"], None],
        ids=["object", "set", "int-key", "list", "none"],
    )
    async def test_save_refuses_state_json_cannot_hold(
        self, store: SessionStore, clock: ManualClock, state: Any
    ) -> None:
        session = Session("s1", state, T0, T0, T0)
        clock.now = T0 + 5
        with pytest.raises(ValidationError) as info:
            await store.save(session)
        assert info.value.status == 400
        assert info.value.details["field"] == "session"
        assert await store.get("s1") is None
        assert (session.updated_at, session.expires_at) == (T0, T0)  # untouched: nothing saved

    async def test_delete_reports_whether_it_existed(self, store: SessionStore) -> None:
        await store.save(new_session())
        await store.save(new_session("s2"))
        assert await store.delete("s1") is True
        assert await store.get("s1") is None
        assert await store.delete("s1") is False
        assert await store.delete("never") is False
        assert await store.get("s2") is not None

    async def test_count_active_counts_saved_sessions(self, store: SessionStore) -> None:
        assert await store.count_active() == 0
        for sid in ("a", "b", "c"):
            await store.save(new_session(sid))
        assert await store.count_active() == 3
        await store.delete("b")
        assert await store.count_active() == 2

    async def test_ping_succeeds_on_a_healthy_store(self, store: SessionStore) -> None:
        await store.ping()

    async def test_check_capacity_refuses_a_new_session_beyond_max_sessions_with_503(
        self, store: SessionStore
    ) -> None:
        store.max_sessions = 2
        for session_id in ("s1", "s2"):  # as the runtime creates a session: check, then save
            await store.check_capacity()
            await store.save(new_session(session_id))
        with pytest.raises(ServiceUnavailable) as info:
            await store.check_capacity()
        assert info.value.status == 503
        assert info.value.headers["Retry-After"].isdigit()
        assert info.value.details == {"max_sessions": 2}
        assert await store.get("s1") is not None  # existing sessions keep working
        await store.save(new_session("s1", {"n": 2}))
        assert await store.delete("s2")
        await store.check_capacity()  # room again at once

    async def test_touch_does_not_create(self, store: SessionStore) -> None:
        await store.touch("ghost")
        assert await store.get("ghost") is None
        assert await store.count_active() == 0

    # -- lock --------------------------------------------------------------------------------
    async def test_lock_is_an_async_context_manager_released_on_error(
        self, store: SessionStore
    ) -> None:
        async with asyncio.timeout(_WAIT):
            async with store.lock("s1"):
                pass
            with pytest.raises(RuntimeError, match="workflow failed"):
                async with store.lock("s1"):
                    raise RuntimeError("workflow failed")
            async with store.lock("s1"):  # released by the error: free again
                pass

    async def test_lock_of_different_sessions_never_block_each_other(
        self, store: SessionStore
    ) -> None:
        async with asyncio.timeout(_WAIT):
            async with store.lock("a"), store.lock("b"):
                pass

    async def test_lock_excludes_a_second_holder_when_cross_process(
        self, store: SessionStore
    ) -> None:
        order: list[str] = []
        entered = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with store.lock("s1"):
                order.append("first in")
                entered.set()
                await release.wait()
                order.append("first out")

        async def second() -> None:
            await entered.wait()
            async with store.lock("s1"):
                order.append("second in")

        async with asyncio.timeout(_WAIT):
            tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
            await entered.wait()
            if store.cross_process_lock:
                for _ in range(20):  # give the second holder every chance to barge in
                    await asyncio.sleep(0.005)
                assert order == ["first in"]
                release.set()
                await asyncio.gather(*tasks)
                assert order == ["first in", "first out", "second in"]
            else:  # the default holds nothing: runs in this process take turns elsewhere
                await tasks[1]
                assert order == ["first in", "second in"]
                release.set()
                await tasks[0]


@async_tests
class SessionExpiryContract(StoreContract):
    """The expiry cases that move the ``clock`` fixture: for a session store that reads time from
    it (subclass it next to :class:`SessionStoreContract`, with the same ``store`` fixture)."""

    async def test_session_expires_after_its_ttl(
        self, store: SessionStore, clock: ManualClock
    ) -> None:
        await store.save(new_session())
        clock.now = T0 + store.ttl * 0.99
        assert await store.get("s1") is not None
        clock.now = T0 + store.ttl
        assert await store.get("s1") is None
        assert await store.purge_expired() == 0  # get() already deleted it
        assert await store.count_active() == 0

    async def test_save_slides_the_expiry(self, store: SessionStore, clock: ManualClock) -> None:
        ttl = store.ttl
        await store.save(new_session())
        clock.now = T0 + ttl * 0.9
        loaded = await store.get("s1")
        assert loaded is not None
        await store.save(loaded)
        clock.now = T0 + ttl * 1.5  # past the first expiry, within the second
        loaded = await store.get("s1")
        assert loaded is not None and loaded.expires_at == T0 + ttl * 0.9 + ttl
        assert loaded.created_at == T0
        clock.now = T0 + ttl * 1.95
        assert await store.get("s1") is None

    async def test_touch_extends_without_changing_state(
        self, store: SessionStore, clock: ManualClock
    ) -> None:
        ttl = store.ttl
        await store.save(new_session(state={"keep": True}))
        clock.now = T0 + ttl * 0.9
        await store.touch("s1")
        clock.now = T0 + ttl * 1.5
        loaded = await store.get("s1")
        assert loaded is not None
        assert loaded.state == {"keep": True}
        assert (loaded.updated_at, loaded.expires_at) == (T0, T0 + ttl * 0.9 + ttl)

    async def test_touch_does_not_revive(self, store: SessionStore, clock: ManualClock) -> None:
        await store.save(new_session())
        clock.now = T0 + store.ttl + 1
        await store.touch("s1")
        assert await store.get("s1") is None

    async def test_count_active_ignores_expired(
        self, store: SessionStore, clock: ManualClock
    ) -> None:
        await store.save(new_session("old"))
        clock.now = T0 + store.ttl / 2
        await store.save(new_session("new1"))
        await store.save(new_session("new2"))
        assert await store.count_active() == 3
        clock.now = T0 + store.ttl
        assert await store.count_active() == 2

    async def test_purge_expired_removes_only_expired(
        self, store: SessionStore, clock: ManualClock
    ) -> None:
        for i in range(3):
            await store.save(new_session(f"old{i}"))
        clock.now = T0 + store.ttl / 2
        await store.save(new_session("live"))
        clock.now = T0 + store.ttl + 1
        assert await store.purge_expired() == 3
        assert await store.purge_expired() == 0
        assert await store.count_active() == 1
        assert await store.get("live") is not None
