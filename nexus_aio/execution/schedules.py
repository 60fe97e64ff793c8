"""Schedules: when the next tick is (:class:`Timing`); the task firing them (:class:`Scheduler`).

A fired tick is an ordinary async run handed to the execution service (``trigger: "schedule"``
and the ``schedule_id`` in its record), so schedules get the same validation, queue bounds,
records, events and webhooks as any request. The scheduler of every serving process looks for
due schedules; the store's compare-and-set on ``next_run`` lets exactly one of them fire each
tick. A tick found more than ``schedule_misfire_grace`` seconds late (the server was down or
stalled) follows the schedule's ``catchup``: ``skip`` fires nothing for it, ``one`` fires once
for all the ticks missed; either way the next tick is the first one after now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nexus_aio.errors import NexusError, ValidationError
from nexus_aio.stores.schedules import CATCHUP, Schedule, ScheduleStore

if TYPE_CHECKING:
    from nexus_aio.execution.service import ExecutionService

__all__ = ["MIN_EVERY", "Scheduler", "Timing"]

log = logging.getLogger("nexus_aio.schedules")

MIN_EVERY = 1.0  # seconds: the shortest ``every``
MAX_WAIT = 1.0  # the scheduler looks at the store at least this often (other processes' edits)
BATCH = 100


def _invalid(field: str, message: str, received: Any = None) -> ValidationError:
    details: dict[str, Any] = {"field": field}
    if received is not None:
        details["received"] = str(received)[:200]
    return ValidationError(message, details=details)


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule ticks: a cron expression in a time zone, or a fixed interval."""

    cron: str | None
    every: float | None
    timezone: str = "UTC"

    @classmethod
    def parse(cls, cron: Any, every: Any, timezone: Any = "UTC") -> Timing:
        """Check a schedule's timing fields; a 400 ``ValidationError`` naming the field."""
        if (cron is None) == (every is None):
            raise _invalid("cron", "give exactly one of cron (an expression) or every (seconds)")
        if not isinstance(timezone, str):
            raise _invalid("timezone", "timezone must be an IANA name such as Europe/Paris")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _invalid("timezone", f"unknown time zone {timezone!r}", timezone) from None
        if every is not None:
            if isinstance(every, bool) or not isinstance(every, int | float):
                raise _invalid("every", "every must be a number of seconds", every)
            if not MIN_EVERY <= every <= 366 * 86400:
                raise _invalid("every", f"every must be between {MIN_EVERY:g} s and a year", every)
            return cls(None, float(every), timezone)
        if not isinstance(cron, str) or not cron.strip():
            raise _invalid("cron", "cron must be a cron expression string", cron)
        cron = " ".join(cron.split())
        fields = len(cron.split(" "))
        if fields not in (5, 6):
            raise _invalid(
                "cron",
                f"cron must have 5 fields (minute hour day month weekday) or 6 (seconds "
                f"first); got {fields}",
                cron,
            )
        timing = cls(cron, None, timezone)
        try:
            timing.next_after(time.time())
        except Exception as exc:  # croniter's errors have no common base worth naming
            raise _invalid("cron", f"invalid cron expression {cron!r}: {exc}", cron) from None
        return timing

    def next_after(self, moment: float) -> float:
        """The first tick strictly after ``moment`` (epoch seconds)."""
        if self.every is not None:
            return moment + self.every
        from croniter import croniter

        assert self.cron is not None
        start = datetime.fromtimestamp(moment, ZoneInfo(self.timezone))
        seconds_first = len(self.cron.split(" ")) == 6
        return float(croniter(self.cron, start, second_at_beginning=seconds_first).get_next(float))

    @classmethod
    def of(cls, schedule: Schedule) -> Timing:
        return cls(schedule.cron, schedule.every, schedule.timezone)


def check_catchup(value: Any) -> str:
    if value not in CATCHUP:
        raise _invalid("catchup", f"catchup must be one of {', '.join(CATCHUP)}", value)
    return str(value)


class Scheduler:
    """Fires due schedules for one process (see the module docstring)."""

    def __init__(self, service: ExecutionService, store: ScheduleStore, grace: float) -> None:
        self.service = service
        self.store = store
        self.grace = grace
        self.wake = asyncio.Event()  # set when a schedule was created or changed here

    async def run(self) -> None:
        while True:
            self.wake.clear()
            wait = MAX_WAIT
            try:
                await self.fire_due(time.time())
                upcoming = await self.store.next_due()
                if upcoming is not None:
                    wait = min(MAX_WAIT, max(0.0, upcoming - time.time()))
            except Exception:  # a store hiccup: look again soon
                log.warning("schedule round failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)

    async def fire_due(self, now: float) -> None:
        for schedule in await self.store.due(now, BATCH):
            await self.fire(schedule, now)

    async def fire(self, schedule: Schedule, now: float) -> None:
        """Claim the due tick of ``schedule`` and, unless it is skipped, start its run."""
        tick = schedule.next_run
        late = now - tick > self.grace
        fired = tick if (not late or schedule.catchup == "one") else None
        try:
            next_run = Timing.of(schedule).next_after(max(now, tick))
        except Exception:
            log.exception("schedule %s has an unusable timing; pausing it", schedule.id)
            schedule.paused = True
            await self.store.put(schedule)
            return
        if not await self.store.advance(schedule.id, tick, next_run, fired):
            return  # another process fired it, or it was paused or changed meanwhile
        if fired is None:
            log.info("schedule %s: tick missed while down, skipped (catchup skip)", schedule.id)
            return
        execution_id, error = await self.start(schedule)
        await self.store.note_run(schedule.id, execution_id, error)

    async def start(self, schedule: Schedule) -> tuple[str | None, str | None]:
        from nexus_aio.execution.service import RunRequest

        request = RunRequest(
            schedule.workflow,
            dict(schedule.inputs),
            "async",
            schedule.session_id,
            actor=schedule.actor,
            webhook=schedule.webhook,
            trigger="schedule",
            schedule_id=schedule.id,
        )
        try:
            record = await self.service.submit(request)
        except NexusError as exc:
            log.warning("schedule %s could not start %s: %s", schedule.id, schedule.workflow, exc)
            return request.execution_id, f"{exc.type}: {exc.message}"
        return record.id, None
