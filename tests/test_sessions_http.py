"""Sessions over real HTTP: multi-step state, serialization, expiry, DELETE, SQLite, ownership."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from aiohttp import web

from nexus_aio import Context, Nexus, hookimpl
from nexus_aio.stores.sessions import MemorySessionStore, Session
from nexus_aio.testing import make_app
from nexus_aio.web.sessions import purge_interval, purge_periodically

T0 = 1_700_000_000.0
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ClockedSessions:
    """Supplies a memory session store on a fake clock through ``storage_backend``."""

    def __init__(self, ttl: float) -> None:
        self.clock = FakeClock()
        self.store = MemorySessionStore(ttl=ttl, clock=self.clock)

    @hookimpl
    def storage_backend(self, nexus: Any, kind: str) -> Any:
        return self.store if kind == "sessions" else None


class HeaderAuth:
    """``X-User`` names the actor; there is no permission policy beyond session ownership."""

    @hookimpl
    def actor_from_request(self, nexus: Any, request: web.Request) -> Any:
        user = request.headers.get("X-User")
        return {"id": user} if user else None


async def slow_increment(ctx: Context) -> int:
    """Read, yield to the loop, write: loses updates unless a session's runs take turns."""
    count = ctx.session.get("count", 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    ctx.session["count"] = count + 1
    return int(ctx.session["count"])


async def set_then_fail(ctx: Context, value: str) -> None:
    ctx.session["value"] = value
    raise RuntimeError("boom")


async def run(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    session_id: str | None = None,
    inputs: Any = None,
    body_session: str | None = None,
    **kw: Any,
) -> tuple[int, Any, Any]:
    headers = dict(kw.pop("headers", {}))
    if session_id is not None:
        headers["X-Session-ID"] = session_id
    body: dict[str, Any] = {"inputs": inputs or {}}
    if body_session is not None:
        body["session_id"] = body_session
    async with http.post(
        f"{url}/workflows/{name}/execute", json=body, headers=headers, **kw
    ) as resp:
        return resp.status, resp.headers, await resp.json()


async def get_session(
    http: aiohttp.ClientSession, url: str, sid: str, **kw: Any
) -> tuple[int, Any]:
    async with http.get(f"{url}/sessions/{sid}", **kw) as resp:
        return resp.status, await resp.json()


async def delete_session(http: aiohttp.ClientSession, url: str, sid: str, **kw: Any) -> int:
    async with http.delete(f"{url}/sessions/{sid}", **kw) as resp:
        await resp.read()
        return resp.status


def app_with(*workflows: Any, **settings: Any) -> Nexus:
    app = make_app(**settings)
    for fn in workflows:
        app.register(fn.__name__, fn)
    return app


# -- multi-step -------------------------------------------------------------------------------
async def test_counter_counts_per_session(nexus_server, http):
    url = await nexus_server(make_app())
    results = []
    for _ in range(3):
        status, headers, body = await run(http, url, "counter", "session-a")
        assert status == 200
        assert headers["X-Session-ID"] == "session-a"
        assert body["session_id"] == "session-a"
        results.append(body["result"])
    assert results == [1, 2, 3]
    _, _, body = await run(http, url, "counter", "session-b")
    assert body["result"] == 1
    _, _, body = await run(http, url, "counter")  # no session: nothing carried over
    assert body["result"] == 1 and "session_id" not in body


async def test_fifty_concurrent_steps_of_one_session_lose_no_update(nexus_server, http):
    url = await nexus_server(app_with(slow_increment))
    results = await asyncio.gather(*(run(http, url, "slow_increment", "busy") for _ in range(50)))
    assert all(status == 200 for status, _, _ in results)
    assert sorted(body["result"] for _, _, body in results) == list(range(1, 51))
    status, data = await get_session(http, url, "busy")
    assert status == 200 and data["state"] == {"count": 50}


async def test_different_sessions_run_in_parallel(nexus_server, http):
    arrived: dict[str, asyncio.Event] = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def rendezvous(me: str, other: str) -> str:
        arrived[me].set()
        await asyncio.wait_for(arrived[other].wait(), 5)  # deadlocks if sessions were serialized
        return me

    app = make_app()
    app.register("rendezvous", rendezvous)
    url = await nexus_server(app)
    (sa, _, a), (sb, _, b) = await asyncio.gather(
        run(http, url, "rendezvous", "s-a", {"me": "a", "other": "b"}),
        run(http, url, "rendezvous", "s-b", {"me": "b", "other": "a"}),
    )
    assert (sa, sb) == (200, 200) and (a["result"], b["result"]) == ("a", "b")


async def test_body_session_id_works_and_agrees_with_the_header(nexus_server, http):
    url = await nexus_server(make_app())
    _, headers, body = await run(http, url, "counter", body_session="from-body")
    assert body["result"] == 1 and headers["X-Session-ID"] == "from-body"
    _, _, body = await run(http, url, "counter", "from-body", body_session="from-body")
    assert body["result"] == 2


async def test_header_and_body_session_ids_that_differ_are_a_400(nexus_server, http):
    url = await nexus_server(make_app())
    status, _, body = await run(http, url, "counter", "one", body_session="two")
    assert status == 400
    assert body["error"]["details"]["field"] == "session_id"
    status, _ = await get_session(http, url, "one")
    assert status == 404  # nothing ran


async def test_invalid_session_ids_are_a_400(nexus_server, http):
    url = await nexus_server(make_app())
    for bad in ("x" * 129, "has space", "semi;colon", "", "ünï"):
        status, _, body = await run(http, url, "counter", body_session=bad)
        assert status == 400, bad
        assert body["error"]["type"] == "ValidationError"
        assert body["error"]["details"]["field"] == "session_id"
    status, _, _ = await run(http, url, "counter", body_session="x" * 128)
    assert status == 200
    status, body = await get_session(http, url, "bad%20id")
    assert status == 400 and body["error"]["details"]["field"] == "session_id"


async def test_failed_step_discards_its_changes(nexus_server, http):
    url = await nexus_server(app_with(set_then_fail))
    await run(http, url, "counter", "keep")
    status, _, body = await run(http, url, "set_then_fail", "keep", {"value": "lost"})
    assert status == 500 and body["error"]["type"] == "WorkflowExecutionError"
    status, data = await get_session(http, url, "keep")
    assert status == 200 and data["state"] == {"count": 1}
    _, _, body = await run(http, url, "counter", "keep")
    assert body["result"] == 2
    await run(http, url, "set_then_fail", "never-made", {"value": "x"})
    status, _ = await get_session(http, url, "never-made")
    assert status == 404


async def test_stream_and_async_modes_report_the_session(nexus_server, http):
    url = await nexus_server(make_app())
    for mode in ("stream", "async"):
        async with http.post(
            f"{url}/workflows/counter/execute",
            json={"inputs": {}, "mode": mode},
            headers={"X-Session-ID": "modes"},
        ) as resp:
            assert resp.headers["X-Session-ID"] == "modes"
            await resp.read()


# -- inspect, expire, delete ----------------------------------------------------------------------
async def test_get_session_shows_state_and_times(nexus_server, http):
    clocked = ClockedSessions(ttl=100)
    url = await nexus_server(make_app(plugins=[clocked]))
    await run(http, url, "counter", "inspect-me", {"step": 5})
    status, data = await get_session(http, url, "inspect-me")
    assert status == 200
    assert data["session_id"] == "inspect-me"
    assert data["state"] == {"count": 5}
    assert data["ttl"] == 100
    assert data["actor"] is None
    for field in ("created_at", "updated_at", "expires_at"):
        assert ISO_Z.match(data[field]), field
    assert data["updated_at"] == "2023-11-14T22:13:20.000Z"  # T0
    assert data["expires_at"] == "2023-11-14T22:15:00.000Z"  # T0 + 100 s
    status, body = await get_session(http, url, "never-seen")
    assert status == 404 and body["error"]["type"] == "SessionNotFound"


async def test_sessions_slide_then_expire(nexus_server, http):
    clocked = ClockedSessions(ttl=10)
    url = await nexus_server(make_app(plugins=[clocked]))
    await run(http, url, "counter", "sliding")
    for step in (2, 3):
        clocked.clock.t += 8  # 16 s after creation, but never 10 s idle
        _, _, body = await run(http, url, "counter", "sliding")
        assert body["result"] == step
    clocked.clock.t += 9.9
    status, _ = await get_session(http, url, "sliding")
    assert status == 200  # reading does not extend the lifetime...
    clocked.clock.t += 0.1
    status, body = await get_session(http, url, "sliding")
    assert status == 404  # ...so it expires 10 s after the last step
    _, _, body = await run(http, url, "counter", "sliding")
    assert body["result"] == 1  # an expired id starts afresh


async def test_delete_ends_the_session(nexus_server, http):
    url = await nexus_server(make_app())
    await run(http, url, "counter", "doomed")
    await run(http, url, "counter", "doomed")
    assert await delete_session(http, url, "doomed") == 204
    status, _ = await get_session(http, url, "doomed")
    assert status == 404
    assert await delete_session(http, url, "doomed") == 404
    _, _, body = await run(http, url, "counter", "doomed")
    assert body["result"] == 1


async def until(predicate: Any, tries: int = 5000) -> None:
    """Yield to the server until ``predicate()`` holds (it watches state, not the clock)."""
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def test_delete_waits_for_a_running_step(nexus_server, http):
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: Context) -> str:
        ctx.session["held"] = True
        started.set()
        await release.wait()
        return "done"

    app = make_app()
    app.register("hold", hold)
    url = await nexus_server(app)
    step = asyncio.create_task(run(http, url, "hold", "busy-delete"))
    await started.wait()
    deleting = asyncio.create_task(delete_session(http, url, "busy-delete"))
    locks = app.service.runtime.session_locks  # type: ignore[union-attr]
    await until(lambda: locks._entries["busy-delete"].users == 2)  # DELETE waits on the lock
    assert not deleting.done()
    release.set()
    assert (await step)[0] == 200
    assert await deleting == 204  # it waited for the step instead of racing its save...
    status, _ = await get_session(http, url, "busy-delete")
    assert status == 404  # ...so the step's save did not resurrect it


async def test_health_reports_active_sessions(nexus_server, http):
    clocked = ClockedSessions(ttl=10)
    url = await nexus_server(make_app(plugins=[clocked]))

    async def active() -> int:
        async with http.get(f"{url}/health") as resp:
            return int((await resp.json())["active_sessions"])

    assert await active() == 0
    for sid in ("h1", "h2", "h3"):
        await run(http, url, "counter", sid)
    assert await active() == 3
    await delete_session(http, url, "h1")
    assert await active() == 2
    clocked.clock.t += 10
    assert await active() == 0


async def test_sqlite_sessions_survive_a_restart(nexus_server, http, tmp_path):
    database = str(tmp_path / "nexus.db")
    first = make_app(database=database)
    url = await nexus_server(first)
    for _ in range(2):
        await run(http, url, "counter", "durable")
    assert first.app is not None
    await first.app.shutdown()  # stop this instance's server before starting the next
    await first.app.cleanup()

    second = make_app(database=database)
    url = await nexus_server(second)
    _, _, body = await run(http, url, "counter", "durable")
    assert body["result"] == 3
    status, data = await get_session(http, url, "durable")
    assert status == 200 and data["state"] == {"count": 3}


# -- ownership ---------------------------------------------------------------------------------
async def test_a_session_belongs_to_the_actor_that_created_it(nexus_server, http):
    url = await nexus_server(make_app(plugins=[HeaderAuth()]))
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    _, _, body = await run(http, url, "counter", "mine", headers=alice)
    assert body["result"] == 1
    status, _, body = await run(http, url, "counter", "mine", headers=bob)
    assert status == 403 and body["error"]["type"] == "Forbidden"
    status, data = await get_session(http, url, "mine", headers=alice)
    assert status == 200 and data["actor"] == "alice" and data["state"] == {"count": 1}
    status, body = await get_session(http, url, "mine", headers=bob)
    assert status == 403 and body["error"]["type"] == "Forbidden"
    status, body = await get_session(http, url, "mine")
    assert status == 401
    assert await delete_session(http, url, "mine", headers=bob) == 403
    assert await delete_session(http, url, "mine", headers=alice) == 204


# -- the purge -----------------------------------------------------------------------------------
async def test_purge_loop_removes_expired_sessions_each_tick():
    clock = FakeClock()
    store = MemorySessionStore(ttl=10, clock=clock)
    for sid in ("old", "new"):
        await store.save(Session(sid, {}, clock.t, clock.t, clock.t))
        clock.t += 6
    ticks: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:
            raise asyncio.CancelledError

    try:
        await purge_periodically(store, 2.5, sleep=fake_sleep)
    except asyncio.CancelledError:
        pass
    assert ticks == [2.5, 2.5, 2.5]
    assert list(store._sessions) == ["new"]  # "old" expired at T0 + 10, now is T0 + 12


async def test_purge_loop_survives_a_failing_store(caplog):
    class Broken(MemorySessionStore):
        async def purge_expired(self) -> int:
            from nexus_aio.errors import StoreUnavailable

            raise StoreUnavailable("disk gone")

    calls = 0

    async def fake_sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise asyncio.CancelledError

    try:
        await purge_periodically(Broken(), 1.0, sleep=fake_sleep)
    except asyncio.CancelledError:
        pass
    assert calls == 3
    assert caplog.text.count("session purge failed: disk gone") == 2


def test_purge_interval_follows_the_ttl_unless_set():
    assert purge_interval(Nexus(session_ttl=3600, database=":memory:")) == 60.0
    assert purge_interval(Nexus(session_ttl=30, database=":memory:")) == 15.0
    assert purge_interval(Nexus(session_ttl=0.1, database=":memory:")) == 0.5
    assert purge_interval(Nexus(session_purge_interval=2, database=":memory:")) == 2.0
