"""Plain ``def`` workflows run in a thread pool; their results come back to the event loop here.

``loop.run_in_executor`` wakes the loop once per completed call (a ``call_soon_threadsafe``,
a write to the loop's self-pipe, and a callback). Under load many calls complete while the loop
is busy: :class:`ThreadHandoff` queues completions and wakes the loop once for all of those
that arrive before it drains them. Semantics are those of ``run_in_executor``: the call runs in
the pool, the awaiting coroutine gets its result or exception, and cancelling the awaiting
coroutine cancels a call that has not started yet (one that has started runs to its end).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

__all__ = ["ThreadHandoff"]


class ThreadHandoff:
    """Runs calls in ``pool`` for the coroutines of ``loop``; one wake-up per batch of results."""

    __slots__ = ("_done", "_lock", "_scheduled", "loop", "pool")

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Executor) -> None:
        self.loop = loop
        self.pool = pool
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._scheduled = False

    async def run(self, fn: Callable[[], Any]) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        work = self.pool.submit(self._call, fn, future)
        future.add_done_callback(lambda f: work.cancel() if f.cancelled() else None)
        return await future

    def _call(self, fn: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        """In a pool thread: run ``fn`` and queue its outcome for the loop."""
        try:
            result, error = fn(), None
        except BaseException as exc:  # handed to the awaiting coroutine, as run_in_executor does
            result, error = None, exc
        with self._lock:
            self._done.append((future, result, error))
            if self._scheduled:
                return  # the loop has a drain pending: it takes this one too
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _drain(self) -> None:
        """On the loop: deliver every queued outcome."""
        with self._lock:
            done, self._done = self._done, []
            self._scheduled = False
        for future, result, error in done:
            if future.done():  # cancelled while the call ran
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
