"""Plain ``def`` calls run in the thread pool and come back to the loop in batches."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from nexus_aio.execution.handoff import ThreadHandoff


async def test_concurrent_calls_each_get_their_own_result_or_exception() -> None:
    def call(n: int) -> int:
        if n % 7 == 0:
            raise ValueError(n)
        return n * 2

    with ThreadPoolExecutor(4) as pool:
        handoff = ThreadHandoff(asyncio.get_running_loop(), pool)
        outcomes = await asyncio.gather(
            *(handoff.run(lambda n=n: call(n)) for n in range(200)), return_exceptions=True
        )
    for n, outcome in enumerate(outcomes):
        if n % 7 == 0:
            assert isinstance(outcome, ValueError) and outcome.args == (n,)
        else:
            assert outcome == n * 2


async def test_a_cancelled_call_that_has_not_started_never_runs() -> None:
    release = threading.Event()
    ran: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        handoff = ThreadHandoff(asyncio.get_running_loop(), pool)
        busy = asyncio.ensure_future(handoff.run(lambda: release.wait(10)))
        queued = asyncio.ensure_future(handoff.run(lambda: ran.append("queued")))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        assert await busy is True
    assert ran == []
