"""Plain ``def`` workflows run in a thread pool; their results come back to the event loop here.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs, per call, a
``concurrent.futures.Future``, a work item, a done-callback on each side, a wake-up of an idle
thread at once (every call wakes its own, which then waits for the GIL the loop holds: under
load each such thread is woken again every time the loop lets the GIL go, and preempts it) and
a wake-up of the loop (a ``call_soon_threadsafe``, a write to its self-pipe). That kernel work,
not Python code, is what a ``def`` workflow cost more than an ``async def`` one.

:class:`SyncPool` wakes at most one idle thread at a time, and :class:`ThreadHandoff` has it
woken from the loop once the loop is through its current batch of callbacks, for all the calls
queued meanwhile. A thread that takes a call wakes another only when more calls wait and no
other thread is awake to take them, so a burst of quick calls runs on one or two threads one
after the other, and a call that blocks still gets the next one started at once on another
thread. Completions are queued and the loop is woken once for all of those that arrive before
it drains them.

Semantics are those of ``run_in_executor``: the call runs in a pool thread (in that thread's own
context: the caller's context variables are not copied), the awaiting coroutine gets its result
or exception (``BaseException`` included), and cancelling the awaiting coroutine (a timeout
does) cancels a call that has not started yet; one that has started runs to its end.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["SyncPool", "ThreadHandoff"]

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", "ThreadHandoff"]


class SyncPool:
    """Up to ``max_workers`` threads named ``<prefix>_<n>``, each started when woken calls find
    no idle one, running the calls of :class:`ThreadHandoff` in order of arrival."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self.max_workers = max_workers
        self.thread_name_prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._calls: deque[_Call] = deque()
        self._parked: list[threading.Lock] = []  # idle threads, each blocked on its own lock
        self._awake = 0  # threads started or woken that have not yet taken a call or parked
        self._threads: list[threading.Thread] = []
        self._closed = False
        _pools.add(self)

    def submit(self, call: _Call) -> bool:
        """Queue ``call``; returns whether a thread must be woken for it (by :meth:`wake`:
        :class:`ThreadHandoff` has that done once for all the calls of a loop iteration)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._calls.append(call)
            return not self._awake  # else an awake thread takes it (and wakes another if need be)

    def wake(self) -> None:
        """Wake a thread for the calls queued, unless one is awake already."""
        with self._lock:
            if self._calls and not self._awake:
                self._wake_locked()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls; idle threads end, busy ones after their call (``ThreadPoolExecutor``'s
        ``shutdown``). ``cancel_futures`` drops the calls not started and cancels their awaiting
        coroutines; otherwise the threads run them first."""
        with self._lock:
            self._closed = True
            dropped = list(self._calls) if cancel_futures else []
            if cancel_futures:
                self._calls.clear()
            while self._parked:
                self._parked.pop().release()
                self._awake += 1
            threads = list(self._threads)
        for _, future, _ in dropped:
            try:
                future.get_loop().call_soon_threadsafe(future.cancel)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _wake_locked(self) -> None:
        """Have one more thread look at the queue: an idle one, else a new one if allowed."""
        if self._parked:
            self._parked.pop().release()
        elif len(self._threads) < self.max_workers and not self._closed:
            thread = threading.Thread(
                target=self._work,
                name=f"{self.thread_name_prefix}_{len(self._threads)}",
                daemon=False,  # as ``ThreadPoolExecutor``'s: see ``_shutdown_all``
            )
            self._threads.append(thread)
            thread.start()
        else:
            return  # every thread is busy: the first one free takes the call
        self._awake += 1

    def _work(self) -> None:
        park = threading.Lock()
        park.acquire()
        lock, calls = self._lock, self._calls
        counted = True  # in ``_awake``: just started, or woken
        while True:
            with lock:
                if counted:
                    self._awake -= 1
                if calls:
                    fn, future, handoff = calls.popleft()
                    if calls and not self._awake:  # the others must not wait for this call
                        self._wake_locked()
                elif self._closed:
                    return
                else:
                    self._parked.append(park)
                    fn = None
            if fn is None:
                park.acquire()  # released by ``submit``, another thread or ``shutdown``
                counted = True
                continue
            counted = False
            if not future.cancelled():  # cancelled before it started: it never runs
                try:
                    result, error = fn(), None
                except BaseException as exc:  # handed to the awaiting coroutine
                    result, error = None, exc
                handoff.deliver(future, result, error)
                del result, error
            del fn, future, handoff


_pools: weakref.WeakSet[SyncPool] = weakref.WeakSet()


def _shutdown_all() -> None:
    """At interpreter exit, before non-daemon threads are joined: idle threads end, calls
    already queued or running finish first, as with ``ThreadPoolExecutor`` (``os._exit``, as
    ``nexus_aio serve`` leaves, skips this)."""
    for pool in list(_pools):
        pool.shutdown(wait=True)


# What concurrent.futures registers for its threads: called before threading joins them.
threading._register_atexit(_shutdown_all)  # type: ignore[attr-defined]


class ThreadHandoff:
    """Runs calls in ``pool`` for the coroutines of ``loop``: a thread is woken once per loop
    iteration that queued calls, the loop once per batch of results."""

    __slots__ = ("_done", "_lock", "_scheduled", "_waking", "loop", "pool")

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: SyncPool) -> None:
        self.loop = loop
        self.pool = pool
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._scheduled = False
        self._waking = False

    async def run(self, fn: Callable[[], Any]) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.pool.submit((fn, future, self)) and not self._waking:
            # The thread is woken once the loop is through its current batch of callbacks,
            # for every call queued meanwhile, instead of at once to wait for the GIL.
            self._waking = True
            self.loop.call_soon(self._wake)
        return await future

    def _wake(self) -> None:
        self._waking = False
        self.pool.wake()

    def deliver(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        """In a pool thread: queue the outcome of a call for the loop."""
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
