"""Running workflows: timeouts, saturation, sessions, the event log and live followers.

The ``Runtime`` is the one place an execution happens, whatever the mode:
``sync`` runs in the request's own task (no extra task on the hot path); ``stream`` and ``async``
run as background tasks whose events live followers (SSE) read as they are pushed.
Sync code runs in a bounded thread pool so nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nexus_aio.context import Context
from nexus_aio.envelope import error_envelope, iso_timestamp, success_envelope
from nexus_aio.errors import (
    Forbidden,
    NexusError,
    ServiceUnavailable,
    Timeout,
    WorkflowExecutionError,
)
from nexus_aio.stores.executions import TERMINAL, ExecutionEvent, ExecutionRecord, ExecutionStore
from nexus_aio.stores.sessions import Session, SessionLocks, SessionStore

if TYPE_CHECKING:
    from nexus_aio.plugins import Hooks
    from nexus_aio.settings import Settings
    from nexus_aio.workflows.workflow import CompiledWorkflow

log = logging.getLogger("nexus_aio.execution.runtime")


@dataclass(slots=True)
class Submission:
    """A validated request to run a workflow, whatever the mode."""

    workflow: CompiledWorkflow
    inputs: dict[str, Any]  # validated kwargs
    raw_inputs: dict[str, Any]  # as the client sent them (stored in the record)
    execution_id: str
    mode: str = "sync"
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    actor: Any = None
    request_id: str | None = None


def actor_id(actor: Any) -> str | None:
    if actor is None:
        return None
    if isinstance(actor, dict):
        return str(actor.get("id")) if actor.get("id") is not None else None
    return str(getattr(actor, "id", actor))


class EventLog:
    """The ordered events of one execution, with a wake-up for live followers."""

    __slots__ = ("_changed", "events", "finished", "on_push", "persist")

    def __init__(self, persist: bool) -> None:
        self.events: list[ExecutionEvent] = []
        self.finished = False
        self.persist = persist
        self._changed: asyncio.Event | None = None
        # Set when the store shares events live with other processes (``live_events``).
        self.on_push: Callable[[ExecutionEvent], None] | None = None

    def push(self, event: str, data: Any) -> None:
        self.events.append(ExecutionEvent(len(self.events) + 1, event, data, time.time()))
        if self.on_push is not None:
            self.on_push(self.events[-1])
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def finish(self) -> None:
        self.finished = True
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def changed(self) -> asyncio.Event:
        """An event set at the next push or at finish (for followers that also keep time)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def follow(self, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        index = max(after_seq, 0)
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.finished:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()


class Deadlines:
    """Cancels executions that run past their timeout, with one timer for all of them.

    ``asyncio.timeout`` schedules and cancels a timer handle per execution; on the hot path a
    dict insert and delete is cheaper, and a tick of ``TICK`` seconds is precise enough for
    timeouts measured in seconds.
    """

    TICK = 0.05

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, task: asyncio.Task[Any], timeout: float) -> None:
        if self._watchdog is None:
            self._loop = asyncio.get_running_loop()
            self._watchdog = self._loop.create_task(self._watch())
        self._due[task] = self._loop.time() + timeout  # type: ignore[union-attr]

    def discard(self, task: asyncio.Task[Any]) -> None:
        self._due.pop(task, None)
        self._expired.discard(task)

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
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None


class LiveExecution:
    """An execution running in this process (stream or async mode)."""

    __slots__ = ("log", "record", "task")

    def __init__(self, record: ExecutionRecord, log_: EventLog) -> None:
        self.record = record
        self.log = log_
        self.task: asyncio.Task[Any] | None = None


class Runtime:
    def __init__(
        self,
        settings: Settings,
        hooks: Hooks,
        executions: ExecutionStore,
        sessions: SessionStore,
    ) -> None:
        self.settings = settings
        self.hooks = hooks
        self.executions = executions
        self.sessions = sessions
        self.session_locks = SessionLocks()
        self.deadlines = Deadlines()
        self.pool = ThreadPoolExecutor(
            max_workers=settings.sync_workers, thread_name_prefix="nexus-sync"
        )
        self.running = 0
        self.max_running = settings.max_concurrent_requests
        self.live: dict[str, LiveExecution] = {}
        self._observe_started = hooks.implemented("execution_started")
        self._observe_finished = hooks.implemented("execution_finished")

    # -- plumbing -------------------------------------------------------------------------
    async def run_sync_fn(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    def _acquire(self) -> None:
        if self.running >= self.max_running:
            raise ServiceUnavailable(
                f"Server is at its limit of {self.max_running} concurrent executions; retry soon",
                headers={"Retry-After": "1"},
                details={"max_concurrent_requests": self.max_running},
            )
        self.running += 1

    async def close(self) -> None:
        await self.deadlines.close()
        tasks = [live.task for live in self.live.values() if live.task and not live.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- the core: one execution --------------------------------------------------------------
    async def _execute(self, sub: Submission, record: ExecutionRecord, sink: Any) -> Any:
        """Run ``sub`` inside its session (if any) with its timeout; returns the result."""
        wf = sub.workflow
        timeout = wf.timeout or self.settings.request_timeout
        ctx = Context(
            sub.execution_id,
            wf.name,
            metadata=sub.metadata,
            actor=sub.actor,
            request_id=sub.request_id,
            sink=sink,
        )
        record.status = "running"
        record.started_at = time.time()
        if sub.mode != "sync":  # deferred write: history filters and other processes see it
            await self.executions.save(record)
        if self._observe_started:
            self.hooks.execution_started(record)
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.add(task, timeout)
        try:
            if sub.session_id is None:
                return await wf.run(sub.inputs, ctx, self.run_sync_fn)
            async with (
                self.session_locks.hold(sub.session_id),
                self.sessions.lock(sub.session_id),
            ):
                session = await self._load_session(sub)
                ctx.session = orjson.loads(orjson.dumps(session.state))
                result = await wf.run(sub.inputs, ctx, self.run_sync_fn)
                session.state = ctx.session
                await self.sessions.save(session)
                return result
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise
            task.uncancel()
            raise Timeout(
                f"Workflow {wf.name!r} did not finish within {timeout:g} s and was cancelled",
                details={"timeout": timeout},
            ) from None
        except NexusError:
            raise
        except Exception as exc:
            log.error(
                "workflow %s failed (execution %s, request %s)",
                wf.name,
                sub.execution_id,
                sub.request_id,
                exc_info=exc,
            )
            message = str(exc) or type(exc).__name__
            raise WorkflowExecutionError(
                message, details={"exception": type(exc).__name__}
            ) from exc
        finally:
            self.deadlines.discard(task)

    async def _load_session(self, sub: Submission) -> Session:
        assert sub.session_id is not None
        session = await self.sessions.get(sub.session_id)
        owner = actor_id(sub.actor)
        if session is None:
            now = time.time()
            return Session(sub.session_id, {}, now, now, now + self.sessions.ttl, owner)
        if session.actor is not None and session.actor != owner:
            raise Forbidden(
                "This session belongs to another actor", details={"session_id": sub.session_id}
            )
        return session

    def _new_record(self, sub: Submission, status: str) -> ExecutionRecord:
        return ExecutionRecord(
            id=sub.execution_id,
            workflow=sub.workflow.name,
            mode=sub.mode,
            status=status,
            inputs=sub.raw_inputs,
            created_at=time.time(),
            session_id=sub.session_id,
            request_id=sub.request_id,
            actor=actor_id(sub.actor),
        )

    def _finish(
        self, record: ExecutionRecord, result: Any = None, error: NexusError | None = None
    ) -> None:
        record.finished_at = time.time()
        if error is None:
            record.status = "succeeded"
            record.result = result
        else:
            record.error = error.to_dict()
            record.status = "timed_out" if isinstance(error, Timeout) else "failed"
        if self._observe_finished:
            self.hooks.execution_finished(record)

    def envelope_for(self, record: ExecutionRecord) -> tuple[int, dict[str, Any]]:
        """The response a finished execution's client gets (also used for idempotent replays)."""
        if record.status == "succeeded":
            elapsed = (record.finished_at or 0) - (record.started_at or record.created_at)
            return 200, success_envelope(record.result, record.id, elapsed)
        err = record.error or {
            "type": "WorkflowExecutionError",
            "message": record.status,
            "details": {},
        }
        return _STATUS_BY_RECORD.get(record.status, 500), {
            "success": False,
            "error": err,
            "workflow_id": record.id,
            "timestamp": iso_timestamp(),
        }

    async def record_rejected(
        self,
        execution_id: str,
        workflow: str,
        error: NexusError,
        *,
        request_id: str | None = None,
        actor: Any = None,
    ) -> None:
        """Record a request refused before running (bad input), under the id its client saw."""
        now = time.time()
        record = ExecutionRecord(
            id=execution_id,
            workflow=workflow,
            mode="sync",
            status="failed",
            inputs={},
            created_at=now,
            finished_at=now,
            error=error.to_dict(),
            request_id=request_id,
            actor=actor_id(actor),
        )
        try:
            await self.executions.save(record)
        except NexusError:
            log.warning("could not record rejected execution %s", execution_id)

    # -- sync mode ----------------------------------------------------------------------------
    async def run_sync(self, sub: Submission) -> dict[str, Any]:
        """Run in the caller's task; returns the success envelope or raises a ``NexusError``."""
        self._acquire()
        record = self._new_record(sub, "running")
        events = EventLog(persist=False)
        started = time.perf_counter()
        try:
            result = await self._execute(sub, record, events)
        except NexusError as exc:
            self._finish(record, error=exc)
            await self._save(record, events)
            raise
        except asyncio.CancelledError:
            record.status = "cancelled"
            record.finished_at = time.time()
            if self._observe_finished:
                self.hooks.execution_finished(record)
            await asyncio.shield(self._save(record, events))
            raise
        finally:
            self.running -= 1
        self._finish(record, result)
        await self._save(record, events)
        return success_envelope(result, sub.execution_id, time.perf_counter() - started)

    async def _save(self, record: ExecutionRecord, events: EventLog, durable: bool = False) -> None:
        if events.events:  # first, so that a durable save commits the events too
            await self.executions.add_events(record.id, events.events)
        await self.executions.save(record, durable=durable)

    # -- background modes (stream, async) -------------------------------------------------
    async def start(self, sub: Submission) -> LiveExecution:
        """Queue ``sub`` as a background task; followers read its ``EventLog`` live."""
        self._acquire()
        try:
            record = self._new_record(sub, "queued")
            durable = sub.mode == "async"
            await self.executions.save(record, durable=durable)
            # A store with workers elsewhere (Redis + arq) may take the run off this process.
            enqueue = getattr(self.executions, "enqueue", None)
            if enqueue is not None and await enqueue(sub):
                self.running -= 1
                return LiveExecution(record, EventLog(persist=True))
        except BaseException:
            self.running -= 1
            raise
        live = LiveExecution(record, EventLog(persist=True))
        if self.executions.live_events:
            publish = self.executions.publish
            live.log.on_push = lambda event: publish(record, event)
        self.live[record.id] = live
        live.task = asyncio.create_task(self._run_background(sub, live))
        return live

    async def _run_background(self, sub: Submission, live: LiveExecution) -> None:
        record, events = live.record, live.log
        durable = sub.mode == "async"
        events.push(
            "start",
            {"workflow_id": record.id, "name": record.workflow, "timestamp": iso_timestamp()},
        )
        started = time.perf_counter()
        try:
            try:
                result = await self._execute(sub, record, events)
            except NexusError as exc:
                self._finish(record, error=exc)
                events.push("error", error_envelope(exc, record.id))
            except asyncio.CancelledError:
                record.status = "cancelled"
                record.finished_at = time.time()
                record.error = {
                    "type": "Cancelled",
                    "message": "The execution was cancelled",
                    "details": {},
                }
                if self._observe_finished:
                    self.hooks.execution_finished(record)
                events.push(
                    "error",
                    {
                        "success": False,
                        "error": record.error,
                        "workflow_id": record.id,
                        "timestamp": iso_timestamp(),
                    },
                )
            else:
                self._finish(record, result)
                events.push(
                    "complete", success_envelope(result, record.id, time.perf_counter() - started)
                )
        finally:
            self.running -= 1
            events.finish()
            try:
                await asyncio.shield(self._save(record, events, durable=durable))
            except Exception:
                log.exception("could not store execution %s", record.id)
            finally:
                self.live.pop(record.id, None)

    async def cancel(self, execution_id: str) -> bool:
        live = self.live.get(execution_id)
        if live is None or live.task is None or live.task.done():
            return live is None and await self.executions.request_cancel(execution_id)
        live.task.cancel()
        await asyncio.gather(live.task, return_exceptions=True)
        return True

    async def get_record(self, execution_id: str) -> ExecutionRecord | None:
        live = self.live.get(execution_id)
        if live is not None:
            return live.record
        return await self.executions.get(execution_id)

    async def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        """Stored events after ``after_seq``, then live ones until the execution ends."""
        live = self.live.get(execution_id)
        if live is not None:
            async for event in live.log.follow(after_seq):
                yield event
            return
        async for event in self.executions.follow(execution_id, after_seq):
            yield event

    async def wait(self, execution_id: str, seconds: float) -> ExecutionRecord | None:
        live = self.live.get(execution_id)
        if live is not None and live.task is not None:
            await asyncio.wait({live.task}, timeout=seconds)
        return await self.get_record(execution_id)


_STATUS_BY_RECORD = {"failed": 500, "timed_out": 504, "cancelled": 409, "interrupted": 500}


def is_terminal(record: ExecutionRecord) -> bool:
    return record.status in TERMINAL
