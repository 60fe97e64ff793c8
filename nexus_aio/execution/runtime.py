"""The runtime: runs one execution at a time per call, whatever the mode.

``sync`` runs in the caller's task (no extra task on the hot path); ``stream`` and ``async`` run
as background tasks whose events live followers read as they are pushed. Every mode logs the same
event sequence (``start`` ... ``complete``|``error``) and ends with one save of record and log.
Sync code runs in a bounded thread pool so nothing blocks the event loop.

Running executions are capped by ``max_concurrent_requests``: a sync or stream request beyond it
is refused at once (503); async runs wait for a slot in the executor's queue, and a slot freed
by any run goes to the oldest waiting one first (:meth:`Runtime.on_slot_free`).

A workflow with a ``RetryPolicy`` runs again after a retryable failure (``execution.retry``):
sync and stream runs wait in place, under the same overall timeout; an async run gives its slot
back and its executor runs it again once the delay has passed (``LiveExecution.on_retry``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from nexus_aio.context import Context
from nexus_aio.envelope import error_envelope, success_envelope
from nexus_aio.errors import (
    Cancelled,
    Forbidden,
    Interrupted,
    NexusError,
    ServiceUnavailable,
    Timeout,
    WorkflowExecutionError,
)
from nexus_aio.execution.deadlines import Deadlines
from nexus_aio.execution.events import EventLog, start_data
from nexus_aio.execution.handoff import SyncPool, ThreadHandoff
from nexus_aio.execution.locks import SessionLocks
from nexus_aio.execution.retry import RetryLater, retry_data, retry_delay
from nexus_aio.plugins import FINISHED_ARGS, STARTED_ARGS
from nexus_aio.stores.executions import ExecutionRecord, ExecutionStore
from nexus_aio.stores.sessions import Session, SessionStore
from nexus_aio.tracing import continue_trace, current_trace
from nexus_aio.workflows.results import check_result

if TYPE_CHECKING:
    from nexus_aio.plugins import Hooks
    from nexus_aio.settings import Settings
    from nexus_aio.workflows.workflow import CompiledWorkflow

__all__ = ["Cleanup", "LiveExecution", "Runtime", "Submission", "actor_id", "run_cleanups"]

log = logging.getLogger("nexus_aio.runtime")
# This process, as the owner of the runs it executes: a parent replacing a dead worker marks the
# runs it owned interrupted (``serve --workers``).
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


Cleanup = Callable[[], object]


def run_cleanups(cleanups: list[Cleanup]) -> None:
    """Run and forget each cleanup (so a second call does nothing); a failing one is logged."""
    while cleanups:
        cleanup = cleanups.pop()
        try:
            cleanup()
        except Exception:
            log.exception("cleanup %r failed", cleanup)


@dataclass(slots=True)
class Submission:
    """A checked and validated request to run a workflow, whatever the mode or channel."""

    workflow: CompiledWorkflow
    inputs: dict[str, Any]  # validated kwargs
    raw_inputs: dict[str, Any]  # as the client sent them (stored in the record)
    execution_id: str
    mode: str = "sync"
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    actor: Any = None
    request_id: str | None = None
    timeout: float = 30.0  # seconds; the workflow's own, else request_timeout or run_timeout
    # Run once when the run ends, whatever the mode and outcome (uploaded files are deleted).
    cleanups: list[Cleanup] = field(default_factory=list)
    trigger: str | None = None  # "schedule" when a schedule started it
    schedule_id: str | None = None
    trace_id: str | None = None  # the W3C trace of the request that asked for it


def actor_id(actor: Any) -> str | None:
    if actor is None:
        return None
    if isinstance(actor, dict):
        return str(actor.get("id")) if actor.get("id") is not None else None
    return str(getattr(actor, "id", actor))


class LiveExecution:
    """An execution this process owns: queued (no task yet), then running in ``task``."""

    __slots__ = ("cleanups", "done", "log", "on_retry", "record", "retry_in", "task")

    def __init__(self, record: ExecutionRecord, log_: EventLog, done: asyncio.Event) -> None:
        self.record = record
        self.log = log_
        self.task: asyncio.Task[Any] | None = None
        self.done = done  # set once the final record and log are saved
        self.cleanups: list[Cleanup] = []  # the submission's, run when it ends
        # Set by the executor that queued the run: called when an attempt failed and the retry
        # policy asks for another, with the seconds to wait (the executor runs it again then).
        # Without it (a queue worker's run) ``retry_in`` tells the caller of ``run_queued``.
        self.on_retry: Callable[[Submission, LiveExecution, float], None] | None = None
        self.retry_in: float | None = None


class Runtime:
    """Runs submissions; owns the running-slot count, the thread pool and live executions."""

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
        self.pool = SyncPool(settings.sync_workers, thread_name_prefix="nexus-sync")
        self._handoff: ThreadHandoff | None = None
        self.running = 0
        self.max_running = settings.max_concurrent_requests
        self.live: dict[str, LiveExecution] = {}
        # Called with no argument when a slot frees; returns True when it took the slot over.
        self.on_slot_free: Callable[[], bool] | None = None
        # Set once the server stops: a run cancelled from then on ends ``interrupted``.
        self.interrupting = False
        # Bound once: a per-execution call is one call per implementation.
        self._started = hooks.observers("execution_started", STARTED_ARGS)
        self._finished = hooks.observers("execution_finished", FINISHED_ARGS)

    # -- plumbing -------------------------------------------------------------------------
    async def run_sync_fn(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in the thread pool; results reach the loop in batches (``ThreadHandoff``)."""
        handoff = self._handoff
        if handoff is None or handoff.loop is not asyncio.get_running_loop():
            handoff = self._handoff = ThreadHandoff(asyncio.get_running_loop(), self.pool)
        return await handoff.run(fn)

    @property
    def has_free_slot(self) -> bool:
        return self.running < self.max_running

    def acquire(self) -> None:
        """Take a running slot now, or refuse with 503 (sync and stream requests)."""
        if self.running >= self.max_running:
            raise ServiceUnavailable(
                f"Server is at its limit of {self.max_running} concurrent executions; retry soon",
                headers={"Retry-After": "1"},
                details={"max_concurrent_requests": self.max_running},
            )
        self.running += 1

    def release(self) -> None:
        """Give a slot back, first to a waiting queued run (which then keeps it)."""
        hand_over = self.on_slot_free
        if hand_over is not None and hand_over():
            return
        self.running -= 1

    def interrupt(self) -> list[asyncio.Task[Any]]:
        """The server is stopping: cancel every running run of this process (sync ones too:
        their request gets the ``Interrupted`` error), each to end ``interrupted``."""
        self.interrupting = True
        tasks = {live.task for live in self.live.values() if live.task and not live.task.done()}
        tasks.update(self.deadlines.tasks())
        for task in tasks:
            task.cancel()
        return list(tasks)

    async def close(self) -> None:
        tasks = self.interrupt()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.deadlines.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- records ------------------------------------------------------------------------------
    def new_record(self, sub: Submission, status: str) -> ExecutionRecord:
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
            trace_id=sub.trace_id,
            trigger=sub.trigger,
            schedule_id=sub.schedule_id,
            owner=INSTANCE,
        )

    def _finish(
        self,
        record: ExecutionRecord,
        events: EventLog | None,
        result: Any = None,
        error: NexusError | None = None,
    ) -> None:
        record.finished_at = time.time()
        if error is None:
            record.status = "succeeded"
            record.result = result
        else:
            record.error = error.to_dict()
            if isinstance(error, Timeout):
                record.status = "timed_out"
            elif isinstance(error, Cancelled):
                record.status = "cancelled"
            elif isinstance(error, Interrupted):
                record.status = "interrupted"
            else:
                record.status = "failed"
        if self._finished:
            logged = events.events if events is not None else ()
            for observe in self._finished:
                observe(record, logged)

    async def _save(self, record: ExecutionRecord, events: EventLog, durable: bool = False) -> None:
        if events.events:  # first, so that a durable save commits the events too
            await self.executions.add_events(record.id, events.events)
        await self.executions.save(record, durable=durable)

    # -- one execution ------------------------------------------------------------------------
    async def _run(
        self, sub: Submission, record: ExecutionRecord, events: EventLog, *, in_place: bool = True
    ) -> dict[str, Any]:
        """Log ``start``, run, log ``complete`` or ``error``; returns the success envelope or
        raises the ``NexusError`` (``Cancelled`` when the task was cancelled from outside).

        A retryable failure logs ``retry`` and, ``in_place``, waits and runs again (all attempts
        within ``sub.timeout``); otherwise it leaves the record ``queued`` and raises
        :class:`RetryLater`: calling this again runs the next attempt."""
        if record.trace_id is not None:  # logs of a run outside its request name its trace
            trace = current_trace.get()
            if trace is None or trace.trace_id != record.trace_id:
                current_trace.set(continue_trace(record.trace_id))
        if record.started_at is None:
            record.started_at = time.time()
            events.push("start", start_data(record, record.started_at))
        else:  # the next attempt of a parked run
            record.attempts += 1
        record.status = "running"
        started = time.perf_counter()
        policy = sub.workflow.retry
        timeout = sub.timeout
        deadline = started + timeout if policy is not None and in_place else None
        while True:
            try:
                result = await self._execute(sub, record, events, timeout)
                break
            except NexusError as exc:
                delay = None if policy is None else retry_delay(policy, exc, record.attempts)
                if delay is not None and deadline is not None:
                    timeout = deadline - time.perf_counter() - delay
                    if timeout <= 0:  # the next attempt could not start in time
                        delay = None
                if delay is None:
                    self._fail(record, events, exc)
                    raise
                if not in_place:  # queued from the retry event on (a snapshot published with it)
                    record.status = "queued"
                events.push("retry", retry_data(record, policy, exc, delay))
                if not in_place:
                    raise RetryLater(delay) from None
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    self._fail(record, events, self._cancelled())
                    raise
                record.attempts += 1
            except asyncio.CancelledError:
                self._fail(record, events, self._cancelled())
                raise
        try:
            check_result(result)  # a result no response could carry fails the run
        except NexusError as exc:
            self._fail(record, events, exc)
            raise
        self._finish(record, events, result)
        if record.attempts == 1:
            elapsed = time.perf_counter() - started
        else:  # from the first attempt's start, backoffs included
            elapsed = (record.finished_at or 0) - record.started_at
        envelope = success_envelope(result, record.id, elapsed, record.finished_at)
        if sub.session_id:
            envelope["session_id"] = sub.session_id
        events.push("complete", envelope)
        return envelope

    def _cancelled(self) -> NexusError:
        """Why a run whose task was cancelled ended: the server stopping, or a cancellation."""
        return Interrupted() if self.interrupting else Cancelled()

    def _fail(self, record: ExecutionRecord, events: EventLog, error: NexusError) -> None:
        self._finish(record, events, error=error)
        error.at = record.finished_at  # the response and the stored event show one timestamp
        events.push("error", error_envelope(error, record.id))

    async def _execute(
        self, sub: Submission, record: ExecutionRecord, sink: Any, seconds: float
    ) -> Any:
        """Run ``sub`` inside its session (if any) within ``seconds``; returns the result
        (``seconds`` is ``sub.timeout`` less what earlier attempts and their backoffs took)."""
        wf = sub.workflow
        ctx = Context(
            sub.execution_id,
            wf.name,
            metadata=sub.metadata,
            actor=sub.actor,
            request_id=sub.request_id,
            sink=sink,
        )
        if sub.mode != "sync":  # deferred write: history filters and other processes see it
            await self.executions.save(record)
        if self._started and record.attempts == 1:
            for observe in self._started:
                observe(record)
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.add(task, seconds)
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
            if self.interrupting and not self.deadlines.expired(task):  # the server stops
                task.uncancel()
                raise Interrupted() from None
            if not self.deadlines.expired(task):
                raise
            task.uncancel()
            raise Timeout(
                f"Workflow {wf.name!r} did not finish within {sub.timeout:g} s and was cancelled",
                details={"timeout": sub.timeout},
            ) from None
        except NexusError:
            raise
        except Exception as exc:
            original = getattr(exc, "original", exc)  # WorkflowAborted: SystemExit and the like
            log.error(
                "workflow %s failed (execution %s, request %s)",
                wf.name,
                sub.execution_id,
                sub.request_id,
                exc_info=original,
            )
            raise WorkflowExecutionError(
                str(original) or type(original).__name__,
                details={"exception": type(original).__name__},
            ) from exc
        finally:
            self.deadlines.discard(task)

    async def _load_session(self, sub: Submission) -> Session:
        assert sub.session_id is not None
        session = await self.sessions.get(sub.session_id)
        owner = actor_id(sub.actor)
        if session is None:
            await self.sessions.check_capacity()  # max_sessions: 503 before anything runs
            now = time.time()
            return Session(sub.session_id, {}, now, now, now + self.sessions.ttl, owner)
        if session.actor is not None and session.actor != owner:
            raise Forbidden(
                "This session belongs to another actor", details={"session_id": sub.session_id}
            )
        return session

    # -- sync mode ----------------------------------------------------------------------------
    async def run_sync(self, sub: Submission) -> dict[str, Any]:
        """Run in the caller's task; returns the success envelope or raises a ``NexusError``."""
        try:
            self.acquire()
            record = self.new_record(sub, "running")
            events = EventLog(persist=False)
            cancelled = False
            try:
                return await self._run(sub, record, events)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                self.release()
                save = self._save(record, events)
                # A caller going away must not stop the save; otherwise no shield (a task per
                # request) on the hot path.
                await (asyncio.shield(save) if cancelled else save)
        finally:
            if sub.cleanups:
                run_cleanups(sub.cleanups)

    # -- background modes (stream, async) -------------------------------------------------
    def track(self, sub: Submission, record: ExecutionRecord) -> LiveExecution:
        """Register a run of this process (queued or about to start) so it can be followed,
        waited for and cancelled; from here on the run's end runs the submission's cleanups."""
        live = self.track_record(record)
        live.cleanups = sub.cleanups
        return live

    def track_record(self, record: ExecutionRecord) -> LiveExecution:
        """:meth:`track` for a run known only by its record (a queue worker's job)."""
        live = LiveExecution(record, EventLog(persist=True), asyncio.Event())
        if self.executions.live_events:
            publish = self.executions.publish
            live.log.on_push = lambda event: publish(record, event)
        self.live[record.id] = live
        return live

    def launch(self, sub: Submission, live: LiveExecution) -> None:
        """Start a tracked run whose slot is already held (the caller took it)."""
        live.task = asyncio.get_running_loop().create_task(self._run_background(sub, live))

    async def start(self, sub: Submission) -> LiveExecution:
        """Take a slot (or 503) and run ``sub`` in the background (stream mode)."""
        try:
            self.acquire()
        except BaseException:
            run_cleanups(sub.cleanups)
            raise
        try:
            record = self.new_record(sub, "queued")
            await self.executions.save(record)
        except BaseException:
            self.release()
            run_cleanups(sub.cleanups)
            raise
        live = self.track(sub, record)
        self.launch(sub, live)
        return live

    async def _run_background(self, sub: Submission, live: LiveExecution) -> None:
        retry_in: float | None = None
        try:
            await self._run(sub, live.record, live.log, in_place=sub.mode != "async")
        except RetryLater as later:
            retry_in = later.delay
        except (NexusError, asyncio.CancelledError):
            pass  # recorded and logged by _run
        finally:
            self.release()
            if retry_in is None:
                await self.settle(live, durable=sub.mode == "async")
        if retry_in is not None:
            await self._park(sub, live, retry_in)

    async def _park(self, sub: Submission, live: LiveExecution, delay: float) -> None:
        """An async run between attempts: it holds no slot, its record says ``queued``. Its
        executor runs it again after ``delay``; without one (a queue worker's run) the run is
        released here with ``retry_in`` set, for the caller to re-queue.

        The hand-over comes before the first ``await``: from the failed attempt to here nothing
        yields, so a cancel or a shutdown finds the run either running or with its executor."""
        live.task = None
        requeue = live.on_retry
        if requeue is not None:
            requeue(sub, live, delay)
        else:
            live.retry_in = delay
            live.log.finish()
            self.live.pop(live.record.id, None)
        try:
            await asyncio.shield(self._save(live.record, live.log, durable=True))
        except Exception:
            log.exception("could not store execution %s", live.record.id)
        finally:
            if requeue is None:
                live.done.set()

    async def settle(self, live: LiveExecution, *, durable: bool) -> None:
        """The final save of a tracked run; then followers and waiters are released (its
        cleanups have run by then: a client that saw the run end finds its files gone)."""
        if live.cleanups:
            run_cleanups(live.cleanups)
        live.log.finish()
        try:
            await asyncio.shield(self._save(live.record, live.log, durable=durable))
        except Exception:
            log.exception("could not store execution %s", live.record.id)
        finally:
            self.live.pop(live.record.id, None)
            live.done.set()

    async def drop(self, live: LiveExecution, error: NexusError) -> None:
        """End a tracked run that never started (cancelled or interrupted while queued)."""
        self._fail(live.record, live.log, error)
        await self.settle(live, durable=True)

    async def cancel(self, execution_id: str) -> bool:
        """Cancel a run of this process that has started; False when there is none."""
        live = self.live.get(execution_id)
        if live is None or live.task is None or live.task.done():
            return False
        live.task.cancel()
        await asyncio.gather(live.task, return_exceptions=True)
        return True
