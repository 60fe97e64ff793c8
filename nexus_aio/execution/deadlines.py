"""One watchdog that cancels executions running past their timeout."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Deadlines"]


class Deadlines:
    """Cancels executions that run past their timeout, with one timer for all of them.

    ``asyncio.timeout`` schedules and cancels a timer handle per execution; on the hot path a
    dict insert and delete is cheaper, and a tick of ``TICK`` seconds is precise enough for
    timeouts measured in seconds. The watchdog lives on the loop of the executions it watches:
    used from another loop (``asyncio.run`` twice), it starts again there.
    """

    TICK = 0.05

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, task: asyncio.Task[Any], timeout: float) -> None:
        loop = task.get_loop()
        if loop is not self._loop or self._watchdog is None or self._watchdog.done():
            self._due = {t: due for t, due in self._due.items() if t.get_loop() is loop}
            self._loop = loop
            self._watchdog = loop.create_task(self._watch(), name="nexus-deadlines")
        self._due[task] = loop.time() + timeout

    def discard(self, task: asyncio.Task[Any]) -> None:
        self._due.pop(task, None)
        self._expired.discard(task)

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The executions being watched (every running one, sync mode included)."""
        return list(self._due)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled because its deadline passed."""
        return task in self._expired

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.TICK)
            if not self._due:
                continue
            now = loop.time()
            for task, due in list(self._due.items()):
                if due <= now:
                    del self._due[task]
                    self._expired.add(task)
                    task.cancel()

    async def close(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.get_loop() is asyncio.get_running_loop():
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
