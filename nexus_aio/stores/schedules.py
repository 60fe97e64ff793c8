"""Schedules: a workflow run again and again, by cron expression or every N seconds.

A :class:`Schedule` is stored with the time of its next tick (``next_run``). Whoever fires a
tick first moves ``next_run`` on with :meth:`ScheduleStore.advance`, a compare-and-set on the
``next_run`` it read, so of the processes or instances sharing the store exactly one fires each
tick. Implementations: :class:`MemoryScheduleStore` here, SQLite (the executions' file) and Redis
(the plugin); ``nexus_aio.testing.contracts.ScheduleStoreContract`` checks them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

from nexus_aio.stores.executions import iso_or_none

__all__ = ["CATCHUP", "MemoryScheduleStore", "Schedule", "ScheduleStore"]

CATCHUP = ("skip", "one")


@dataclass(slots=True)
class Schedule:
    id: str
    workflow: str
    next_run: float  # epoch seconds of the next tick
    created_at: float
    updated_at: float
    inputs: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    paused: bool = False
    catchup: str = "skip"
    webhook: str | None = None
    session_id: str | None = None
    actor: str | None = None
    declared: bool = False  # from @app.workflow(schedule=...): kept in step with the code
    last_run: float | None = None  # the last tick fired
    last_execution_id: str | None = None
    last_error: str | None = None  # why the last tick's run was not accepted

    def to_dict(self) -> dict[str, Any]:
        """JSON for the ``/schedules`` routes."""
        data: dict[str, Any] = {
            "id": self.id,
            "workflow": self.workflow,
            "inputs": self.inputs,
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "paused": self.paused,
            "catchup": self.catchup,
            "webhook": self.webhook,
            "session_id": self.session_id,
            "declared": self.declared,
            "next_run": None if self.paused else iso_or_none(self.next_run),
            "last_run": iso_or_none(self.last_run),
            "last_execution_id": self.last_execution_id,
            "created_at": iso_or_none(self.created_at),
            "updated_at": iso_or_none(self.updated_at),
        }
        if self.last_error is not None:
            data["last_error"] = self.last_error
        return data


class ScheduleStore(ABC):
    """Durable storage of schedules (see the module docstring)."""

    async def open(self) -> None:  # noqa: B027 - optional for stores with nothing to open
        """Connect / create tables."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""

    @abstractmethod
    async def put(self, schedule: Schedule) -> None:
        """Create or replace a schedule (its whole definition, ``next_run`` included)."""

    @abstractmethod
    async def get(self, schedule_id: str) -> Schedule | None: ...

    @abstractmethod
    async def all(self) -> list[Schedule]:
        """Every schedule, oldest first."""

    @abstractmethod
    async def count(self) -> int: ...

    @abstractmethod
    async def delete(self, schedule_id: str) -> bool:
        """Remove a schedule; False if there was none."""

    @abstractmethod
    async def due(self, now: float, limit: int) -> list[Schedule]:
        """Schedules not paused whose ``next_run`` is at or before ``now``, earliest first."""

    @abstractmethod
    async def next_due(self) -> float | None:
        """The earliest ``next_run`` of the schedules not paused (None if there is none)."""

    @abstractmethod
    async def advance(
        self, schedule_id: str, expected: float, next_run: float, fired: float | None
    ) -> bool:
        """Move ``next_run`` from ``expected`` to ``next_run`` (and ``last_run`` to ``fired``
        when a tick is fired) if it still is ``expected`` and the schedule is not paused;
        True for the one caller that did. This is the claim of a tick."""

    @abstractmethod
    async def note_run(self, schedule_id: str, execution_id: str | None, error: str | None) -> None:
        """Record the execution the last tick started (or why it could not)."""


class MemoryScheduleStore(ScheduleStore):
    """In-process schedules for ``database=":memory:"`` (lost at exit)."""

    def __init__(self) -> None:
        self._items: dict[str, Schedule] = {}

    async def put(self, schedule: Schedule) -> None:
        self._items[schedule.id] = replace(schedule, inputs=dict(schedule.inputs))

    async def get(self, schedule_id: str) -> Schedule | None:
        item = self._items.get(schedule_id)
        return None if item is None else replace(item)

    async def all(self) -> list[Schedule]:
        return [replace(s) for s in sorted(self._items.values(), key=lambda s: s.created_at)]

    async def count(self) -> int:
        return len(self._items)

    async def delete(self, schedule_id: str) -> bool:
        return self._items.pop(schedule_id, None) is not None

    async def due(self, now: float, limit: int) -> list[Schedule]:
        items = [s for s in self._items.values() if not s.paused and s.next_run <= now]
        return [replace(s) for s in sorted(items, key=lambda s: s.next_run)[:limit]]

    async def next_due(self) -> float | None:
        times = [s.next_run for s in self._items.values() if not s.paused]
        return min(times) if times else None

    async def advance(
        self, schedule_id: str, expected: float, next_run: float, fired: float | None
    ) -> bool:
        item = self._items.get(schedule_id)
        if item is None or item.paused or item.next_run != expected:
            return False
        item.next_run = next_run
        if fired is not None:
            item.last_run = fired
        return True

    async def note_run(self, schedule_id: str, execution_id: str | None, error: str | None) -> None:
        item = self._items.get(schedule_id)
        if item is not None:
            item.last_execution_id, item.last_error = execution_id, error
