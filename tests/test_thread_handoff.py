"""Plain ``def`` calls run in the ``SyncPool`` threads and come back to the loop in batches.

Real threads throughout: what the pool promises is what ``run_in_executor`` on a
``ThreadPoolExecutor`` gave (results, any exception, no copy of the caller's context, a call
cancelled before it starts never runs, one that started runs to its end, at most
``max_workers`` threads named ``<prefix>_<n>`` started when needed, a shutdown that lets running
calls finish, and an interpreter exit that waits for them).
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from nexus_aio.execution.handoff import SyncPool, ThreadHandoff
from nexus_aio.testing import make_app

WAIT = 30  # seconds a test thread waits for the other side before giving up (never reached)


@pytest.fixture
async def pool() -> AsyncIterator[SyncPool]:
    pool = SyncPool(4, thread_name_prefix="test-pool")
    yield pool
    pool.shutdown(wait=True)


def handoff(pool: SyncPool) -> ThreadHandoff:
    return ThreadHandoff(asyncio.get_running_loop(), pool)


def pool_threads(prefix: str) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(f"{prefix}_"))


async def test_concurrent_calls_each_get_their_own_result_or_exception(pool) -> None:
    def call(n: int) -> int:
        if n % 7 == 0:
            raise ValueError(n)
        return n * 2

    h = handoff(pool)
    outcomes = await asyncio.gather(
        *(h.run(lambda n=n: call(n)) for n in range(200)), return_exceptions=True
    )
    for n, outcome in enumerate(outcomes):
        if n % 7 == 0:
            assert isinstance(outcome, ValueError) and outcome.args == (n,)
        else:
            assert outcome == n * 2


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
async def test_a_base_exception_raised_by_a_call_reaches_the_awaiting_coroutine(
    pool, raised: BaseException
) -> None:
    def call() -> None:
        raise raised

    try:
        await handoff(pool).run(call)
    except BaseException as exc:  # the point of the test
        caught: BaseException = exc
    assert caught is raised
    assert await handoff(pool).run(lambda: "still serving") == "still serving"


async def test_a_call_runs_in_the_pool_thread_s_own_context_not_the_caller_s(pool) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    seen = await handoff(pool).run(lambda: (var.get(), threading.current_thread().name))
    assert seen[0] == "unset"
    assert seen[1].startswith("test-pool_")


async def test_a_cancelled_call_that_has_not_started_never_runs() -> None:
    pool = SyncPool(1, thread_name_prefix="one")
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def busy() -> bool:
        started.set()
        return release.wait(WAIT)

    h = handoff(pool)
    running = asyncio.ensure_future(h.run(busy))
    queued = asyncio.ensure_future(h.run(lambda: ran.append("queued")))
    assert await asyncio.to_thread(started.wait, WAIT)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    assert await running is True
    assert await h.run(lambda: "next") == "next"  # the thread took the cancelled call, skipped it
    pool.shutdown(wait=True)
    assert ran == []


async def test_a_started_call_whose_caller_gave_up_runs_to_its_end(pool) -> None:
    release, finished = threading.Event(), threading.Event()

    def overruns() -> str:
        release.wait(WAIT)
        finished.set()
        return "late"

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handoff(pool).run(overruns), 0.05)
    release.set()
    assert await asyncio.to_thread(finished.wait, WAIT)
    assert await handoff(pool).run(lambda: "next") == "next"


async def test_calls_that_block_run_side_by_side_on_as_many_threads() -> None:
    pool = SyncPool(3, thread_name_prefix="side")
    barrier = threading.Barrier(3, timeout=WAIT)  # breaks (an error) unless all 3 run at once
    h = handoff(pool)
    names = await asyncio.gather(
        *(h.run(lambda: (barrier.wait(), threading.current_thread().name)[1]) for _ in range(3))
    )
    assert sorted(names) == ["side_0", "side_1", "side_2"]
    pool.shutdown(wait=True)


async def test_no_more_than_max_workers_threads_are_started() -> None:
    pool = SyncPool(2, thread_name_prefix="capped")
    barrier = threading.Barrier(2, timeout=WAIT)
    h = handoff(pool)
    names = await asyncio.gather(
        *(h.run(lambda: (barrier.wait(), threading.current_thread().name)[1]) for _ in range(8))
    )
    assert set(names) == {"capped_0", "capped_1"}
    assert pool_threads("capped") == ["capped_0", "capped_1"]
    pool.shutdown(wait=True)


async def test_threads_start_when_a_call_needs_one() -> None:
    pool = SyncPool(8, thread_name_prefix="lazy")
    assert pool_threads("lazy") == []
    assert await handoff(pool).run(threading.current_thread) is not threading.current_thread()
    assert pool_threads("lazy") == ["lazy_0"]
    pool.shutdown(wait=True)
    assert pool_threads("lazy") == []


async def test_shutdown_lets_the_running_call_finish_and_cancels_the_queued_ones() -> None:
    pool = SyncPool(1, thread_name_prefix="closing")
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def busy() -> str:
        started.set()
        release.wait(WAIT)
        return "finished"

    h = handoff(pool)
    running = asyncio.ensure_future(h.run(busy))
    queued = asyncio.ensure_future(h.run(lambda: ran.append("queued")))
    assert await asyncio.to_thread(started.wait, WAIT)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(RuntimeError, match="after shutdown"):
        await h.run(lambda: None)
    release.set()
    assert await running == "finished"
    await asyncio.to_thread(pool.shutdown, wait=True)
    assert pool_threads("closing") == []
    assert ran == []


def test_interpreter_exit_waits_for_a_running_call_and_idle_threads_do_not_hold_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.txt"
    script = textwrap.dedent(
        f"""
        import asyncio, threading
        from pathlib import Path
        from nexus_aio.execution.handoff import SyncPool, ThreadHandoff

        pool = SyncPool(4, thread_name_prefix="exiting")
        release, started = threading.Event(), threading.Event()

        def last_words():
            started.set()
            release.wait()
            Path({str(out)!r}).write_text("finished")

        async def main():
            h = ThreadHandoff(asyncio.get_running_loop(), pool)
            await asyncio.gather(*(h.run(lambda: None) for _ in range(4)))  # idle threads
            asyncio.ensure_future(h.run(last_words))
            await asyncio.to_thread(started.wait)

        asyncio.run(main())
        release.set()  # the interpreter exits now: the call must still finish
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_text() == "finished"


# -- through the HTTP API -------------------------------------------------------------------------
async def post(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.post(url, json={"inputs": {}}) as resp:
        return resp.status, await resp.json()


async def test_def_workflows_that_block_run_side_by_side(nexus_server, http) -> None:
    app = make_app(load_entry_points=False)
    barrier = threading.Barrier(3, timeout=WAIT)

    @app.workflow()
    def meet() -> str:  # a plain def: returns only once all three requests are in a thread
        barrier.wait()
        return threading.current_thread().name

    url = await nexus_server(app)
    results = await asyncio.gather(*(post(http, f"{url}/workflows/meet/execute") for _ in range(3)))
    assert [status for status, _ in results] == [200, 200, 200]
    assert len({data["result"] for _, data in results}) == 3
    assert all(data["result"].startswith("nexus-sync_") for _, data in results)


async def test_a_def_workflow_timed_out_in_the_queue_never_runs_and_one_running_finishes(
    nexus_server, http
) -> None:
    app = make_app(load_entry_points=False, sync_workers=1)
    release, started, finished = threading.Event(), threading.Event(), threading.Event()
    ran: list[str] = []

    @app.workflow(timeout=0.2)
    def hold() -> str:
        started.set()
        release.wait(WAIT)
        finished.set()
        return "held"

    @app.workflow(timeout=0.2)
    def queued() -> str:
        ran.append("queued")
        return "ran"

    url = await nexus_server(app)
    holding = asyncio.ensure_future(post(http, f"{url}/workflows/hold/execute"))
    assert await asyncio.to_thread(started.wait, WAIT)
    status, data = await post(http, f"{url}/workflows/queued/execute")  # waits for the thread
    assert status == 504 and data["error"]["type"] == "Timeout"
    status, data = await holding
    assert status == 504 and data["error"]["type"] == "Timeout"
    release.set()
    assert await asyncio.to_thread(finished.wait, WAIT)  # the timed-out call ran to its end
    status, data = await post(http, f"{url}/workflows/hold/execute")
    assert status == 200 and data["result"] == "held"  # the one thread is free again
    assert ran == []
