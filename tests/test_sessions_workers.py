"""Sessions under ``serve --workers N`` with the default SQLite store: the session lock holds
across processes, so concurrent steps of one session take turns and lose no update."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import requests
from worker_probe import wait_for_workers

from nexus_aio.testing import ServerProcess

APP = """
import asyncio
import os

from nexus_aio import Context, Nexus

app = Nexus()


@app.workflow()
async def pid() -> int:
    return os.getpid()


@app.workflow()
async def increment(ctx: Context) -> dict:
    counter = ctx.session.get("counter", 0)
    await asyncio.sleep(0.005)  # read, think, write: the window a lost update needs
    ctx.session["counter"] = counter + 1
    return {"counter": counter + 1, "pid": os.getpid()}
"""

INCREMENTS = 40


def test_concurrent_steps_of_one_session_across_two_workers_lose_no_update(tmp_path):
    (tmp_path / "counterapp.py").write_text(APP)
    server = ServerProcess(
        ["serve", "--app", "counterapp:app", "--workers", "2"],
        cwd=tmp_path,
        env={"NEXUS_DATABASE": str(tmp_path / "nexus.db")},
    )
    with server:
        wait_for_workers(server.url)

        def step(_: int) -> dict:
            resp = requests.post(
                f"{server.url}/workflows/increment/execute",
                json={},
                # a new connection each time, so the kernel spreads them over both workers
                headers={"X-Session-ID": "shared-counter", "Connection": "close"},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            return resp.json()["result"]

        with ThreadPoolExecutor(max_workers=INCREMENTS) as pool:
            results = list(pool.map(step, range(INCREMENTS)))

        served_by = {result["pid"] for result in results}
        assert len(served_by) == 2, "both workers must have run steps of the session"
        # Each step saw the previous one's write: the counters are exactly 1..40, once each.
        assert sorted(result["counter"] for result in results) == list(range(1, INCREMENTS + 1))
        session = requests.get(f"{server.url}/sessions/shared-counter", timeout=10).json()
        assert session["state"]["counter"] == INCREMENTS
    server.stop()


async def test_a_session_lock_left_by_a_dead_process_frees_itself_after_its_lease(tmp_path):
    """Two stores on one file stand for two processes; the first "dies" holding the lock (it
    never releases nor renews), and the second takes the session once the lease has run out."""
    from nexus_aio.stores.sqlite_sessions import SQLiteSessionStore
    from nexus_aio.testing import ManualClock, opened

    clock = ManualClock()
    path = str(tmp_path / "nexus.db")
    async with (
        opened(SQLiteSessionStore(path, clock=clock, lock_lease=10)) as dead,
        opened(SQLiteSessionStore(path, clock=clock, lock_lease=10)) as alive,
    ):
        held = dead.lock("s1")
        await held.__aenter__()  # and never __aexit__: the process was killed
        dead._held = 0  # nor will it renew
        entered, release = asyncio.Event(), asyncio.Event()
        waiter = asyncio.create_task(_hold(alive, "s1", entered, release))
        await asyncio.sleep(0.2)
        assert not entered.is_set(), "a live lease must keep the other process out"
        clock.now += 10
        async with asyncio.timeout(5):
            await entered.wait()
        late = asyncio.create_task(_hold(dead, "s1", asyncio.Event(), asyncio.Event()))
        await asyncio.sleep(0.2)
        assert not late.done(), "the new holder excludes the old process in turn"
        late.cancel()
        await asyncio.gather(late, return_exceptions=True)
        release.set()
        await waiter


async def _hold(store, session_id: str, entered: asyncio.Event, release: asyncio.Event) -> None:
    async with store.lock(session_id):
        entered.set()
        await release.wait()
