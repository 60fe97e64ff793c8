"""The execution service: the one way a workflow runs, whatever the channel.

HTTP execute (sync, stream, async), batch items, ``python -m nexus_aio run``,
``Nexus.execute_workflow`` and queue workers all hand a :class:`RunRequest` to an
:class:`ExecutionService`. It owns what every channel needs done the same way: the request
checks (workflow lookup, mode, security filter, session id, input validation), the record of
rejected requests, sessions, idempotency, the event log, the executor of async runs, and the
opening and closing of the stores (through the ``storage_backend`` hook).

A channel keeps only what is its own: reading its wire format and rendering the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexus_aio.envelope import error_envelope, new_execution_id
from nexus_aio.errors import (
    ConfigurationError,
    Interrupted,
    NexusError,
    ValidationError,
    WorkerLost,
    WorkflowNotFound,
)
from nexus_aio.execution.events import closing_event
from nexus_aio.execution.executor import Executor, LocalExecutor
from nexus_aio.execution.idempotency import Idempotency
from nexus_aio.execution.retry import retry_data
from nexus_aio.execution.runtime import (
    Cleanup,
    LiveExecution,
    Runtime,
    Submission,
    actor_id,
    run_cleanups,
)
from nexus_aio.execution.webhooks import Webhooks
from nexus_aio.security import check_payload, limits_from
from nexus_aio.stores.executions import (
    TERMINAL,
    ExecutionEvent,
    ExecutionRecord,
    ExecutionStore,
)
from nexus_aio.stores.sessions import SessionStore, validate_session_id
from nexus_aio.stores.webhooks import MemoryWebhookOutbox, WebhookOutbox
from nexus_aio.tracing import current_trace
from nexus_aio.workflows.files import has_files, recorded_inputs

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = ["MODES", "ExecutionService", "RunRequest"]

log = logging.getLogger("nexus_aio.execution")

MODES = ("sync", "stream", "async")
SETTLE_TIMEOUT = 2.0  # how long a reader waits for a finished run's final save


@dataclass(slots=True)
class RunRequest:
    """What a channel asks for: run ``workflow`` with ``inputs`` (as the client sent them)."""

    workflow: str
    inputs: Any = None
    mode: str = "sync"
    session_id: str | None = None
    context: dict[str, Any] | None = None
    actor: Any = None
    request_id: str | None = None
    # The id the client will see; a channel that shows it before the run (HTTP) sets it.
    execution_id: str | None = None
    # Handed to the service with the request: run when the run ends (or when it is refused),
    # e.g. deleting uploaded files, which must outlive the HTTP request of an async run.
    cleanups: list[Cleanup] = field(default_factory=list)
    # POST the final record there when the run ends (async and stream runs; signed).
    webhook: str | None = None
    # What started the run when not a client's request ("schedule"), and which schedule.
    trigger: str | None = None
    schedule_id: str | None = None


class ExecutionService:
    """Runs workflows for every channel; one per serving app (or per ``run``/embedded use)."""

    def __init__(
        self,
        nexus: Nexus,
        executions: ExecutionStore,
        sessions: SessionStore,
        outbox: WebhookOutbox | None = None,
    ) -> None:
        settings = nexus.settings
        self.nexus = nexus
        self.settings = settings
        self.executions = executions
        self.sessions = sessions
        self.runtime = Runtime(settings, nexus.hooks, executions, sessions)
        self.executor: Executor = LocalExecutor(self.runtime, settings.max_queued_runs)
        self.idempotency = Idempotency(executions, settings.idempotency_ttl)
        self.webhooks = Webhooks(settings, outbox or MemoryWebhookOutbox())
        self.limits = limits_from(settings)
        self.loop = asyncio.get_running_loop()
        self._interrupter: asyncio.Task[None] | None = None
        # Tasks waiting on runs of other processes (follow, wait): interrupted at shutdown.
        self._waiters: set[asyncio.Task[Any]] = set()
        # Stream clients following each run of this process, and the pending cancellations of
        # runs whose last stream client left (see :meth:`detach`).
        self.followers: dict[str, int] = {}
        self.orphaned: dict[str, asyncio.TimerHandle] = {}
        self._cancelling: set[asyncio.Task[bool]] = set()

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    async def open(cls, nexus: Nexus, *, recover: bool = False) -> ExecutionService:
        """Open the stores the ``storage_backend`` hook picks and the executor the ``executor``
        hook picks (else :class:`LocalExecutor`). ``recover`` marks runs a dead server left
        queued or running as interrupted: only a server starting (once for ``--workers``)."""
        hooks = nexus.hooks
        executions = await hooks.storage_backend("executions")
        sessions = await hooks.storage_backend("sessions")
        if executions is None or sessions is None:
            raise ConfigurationError(
                "no storage_backend plugin supplied the executions/sessions stores"
            )
        outbox = await hooks.storage_backend("webhooks") or MemoryWebhookOutbox()
        await executions.open()
        try:
            await sessions.open()
            try:
                await outbox.open()
            except BaseException:
                await sessions.close()
                raise
        except BaseException:
            await executions.close()
            raise
        if recover:
            await _recover(executions)
        service = cls(nexus, executions, sessions, outbox)
        try:
            executor = await hooks.executor(service)
        except BaseException:
            await service.close()
            raise
        if executor is not None:
            service.runtime.on_slot_free = None
            service.executor = executor
        return service

    def interrupt_after(self, seconds: float) -> None:
        """The server stops (SIGTERM): runs still going after ``seconds`` are interrupted, so a
        stream ends with an ``Interrupted`` error event and an async run reads ``interrupted``."""
        if self._interrupter is None:
            self._interrupter = self.loop.create_task(self._interrupt_later(seconds))

    async def _interrupt_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.executor.close()  # first: a freed slot must not start a waiting run
        self.runtime.interrupt()
        for task in list(self._waiters):
            task.cancel()

    def _stopped_waiting(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether a ``CancelledError`` in ``task`` is the shutdown's (then it is consumed)."""
        if task is None or not self.runtime.interrupting:
            return False
        task.uncancel()
        return True

    async def close(self) -> None:
        """Stop the executor (waiting runs become interrupted), interrupt running ones, close
        the stores (writing what is pending)."""
        interrupter = self._interrupter
        if interrupter is not None and not interrupter.done():
            interrupter.cancel()
            await asyncio.gather(interrupter, return_exceptions=True)
        for handle in self.orphaned.values():
            handle.cancel()
        self.orphaned.clear()
        try:
            await self.executor.close()
            await self.runtime.close()
            await self.idempotency.close()
        finally:
            try:
                await self.sessions.close()
                await self.webhooks.outbox.close()
            finally:
                await self.executions.close()

    @property
    def running(self) -> int:
        return self.runtime.running

    # -- checks -----------------------------------------------------------------------------
    def prepare(self, req: RunRequest) -> Submission:
        """Check and validate ``req``; raises ``WorkflowNotFound`` (404) or a 400 error."""
        wf = self.nexus.get_workflow(req.workflow)
        if req.mode not in MODES:
            raise ValidationError(
                f"Invalid mode {req.mode!r}: use one of {', '.join(MODES)}",
                details={
                    "field": "mode",
                    "expected": "one of sync, stream, async",
                    "received": str(req.mode),
                },
            )
        inputs = {} if req.inputs is None else req.inputs
        check_payload(inputs, self.limits, path="inputs")
        if req.context is not None:
            check_payload(req.context, self.limits, path="context")
        session_id = None if req.session_id is None else validate_session_id(req.session_id)
        if req.webhook is not None:
            self.webhooks.check(req.webhook, req.mode)
        kwargs = wf.schema.validate(inputs)
        if req.mode == "async" and not isinstance(self.executor, LocalExecutor):
            if wf.schema.file_inputs and has_files(kwargs):  # files live on this machine only
                raise ValidationError(
                    "File inputs cannot be sent to queue workers: use mode sync or stream",
                    details={"field": "mode", "expected": "sync or stream", "received": "async"},
                )
        settings = self.settings
        if wf.timeout:
            timeout = wf.timeout
        elif req.mode == "async":
            timeout = settings.run_timeout
        else:
            timeout = settings.request_timeout
        return Submission(
            wf,
            kwargs,
            # Records show files as their metadata, never content or path.
            recorded_inputs(inputs) if wf.schema.file_inputs else inputs,
            req.execution_id or new_execution_id(),
            req.mode,
            session_id,
            req.context,
            req.actor,
            req.request_id,
            timeout,
            req.cleanups,
            req.trigger,
            req.schedule_id,
            trace.trace_id if (trace := current_trace.get()) is not None else None,
        )

    async def admit(self, req: RunRequest) -> Submission:
        """:meth:`prepare`, keeping a record of a refused request under the id its client sees
        (a workflow that does not exist has no record); a refused request's cleanups run."""
        try:
            sub = self.prepare(req)
            if req.webhook is not None:
                await self.webhooks.check_resolved(req.webhook)
            return sub
        except WorkflowNotFound:
            run_cleanups(req.cleanups)
            raise
        except NexusError as exc:
            run_cleanups(req.cleanups)
            if req.execution_id is not None:
                await self.reject(
                    req.execution_id,
                    req.workflow,
                    exc,
                    request_id=req.request_id,
                    actor=req.actor,
                )
            raise
        except BaseException:
            run_cleanups(req.cleanups)
            raise

    async def reject(
        self,
        execution_id: str,
        workflow: str,
        error: NexusError,
        *,
        request_id: str | None = None,
        actor: Any = None,
    ) -> None:
        """Record a request refused before running (a channel's own parsing errors too), so
        its ``workflow_id`` can be looked up; its log holds the one ``error`` event."""
        now = time.time()
        error.at = now
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
        event = ExecutionEvent(1, "error", error_envelope(error, execution_id), now)
        try:
            await self.executions.add_events(execution_id, [event])
            await self.executions.save(record)
        except NexusError:
            log.warning("could not record rejected execution %s", execution_id)

    # -- the three modes ----------------------------------------------------------------------
    async def run(self, req: RunRequest) -> dict[str, Any]:
        """Sync mode: run now in this task; the success envelope, or a ``NexusError``."""
        if req.execution_id is None:
            req.execution_id = new_execution_id()
        return await self.runtime.run_sync(await self.admit(req))

    async def stream(self, req: RunRequest) -> LiveExecution:
        """Stream mode: start now in the background (or 503); follow its ``log``."""
        sub = await self.admit(req)
        if req.webhook is None:
            return await self.runtime.start(sub)
        await self.webhooks.register(sub.execution_id, req.webhook)
        try:
            return await self.runtime.start(sub)
        except BaseException:
            await self.webhooks.abandon(sub.execution_id)
            raise

    async def submit(self, req: RunRequest) -> ExecutionRecord:
        """Async mode: hand the run to the executor's queue; its ``queued`` record."""
        sub = await self.admit(req)
        try:
            if req.webhook is not None:
                await self.webhooks.register(sub.execution_id, req.webhook)
            return await self.executor.submit(sub)
        except BaseException:  # not accepted: nothing will run it
            run_cleanups(sub.cleanups)
            if req.webhook is not None:
                await self.webhooks.abandon(sub.execution_id)
            raise

    async def run_queued(
        self,
        record: ExecutionRecord,
        *,
        attempt: int = 1,
        context: dict[str, Any] | None = None,
        actor: Any = None,
    ) -> tuple[ExecutionRecord, float | None]:
        """Queue workers: run here, to its end, an async run another process accepted (its
        ``queued`` record is in the shared store); returns the final record and None. A later
        try continues the stored log, after a ``retry`` event when the previous worker died.

        When the attempt failed and the workflow's ``RetryPolicy`` asks for another, the record
        is left ``queued`` and the seconds to wait come second: the caller queues it again."""
        runtime = self.runtime
        request = RunRequest(
            record.workflow,
            record.inputs,
            "async",
            record.session_id,
            context,
            actor,
            record.request_id,
            record.id,
        )
        try:
            sub = self.prepare(request)
        except NexusError as exc:  # e.g. this worker runs another version of the app
            live = runtime.track_record(record)
            await runtime.drop(live, exc)
            return live.record, None
        live = runtime.track_record(record)
        live.log.events.extend(await self.executions.events(record.id))
        if attempt > 1 and record.status == "running":  # the worker running it was lost
            lost = WorkerLost("The worker running this attempt stopped before it ended")
            live.log.push("retry", retry_data(record, sub.workflow.retry, lost, 0.0))
        runtime.running += 1  # the queue bounds how many runs a worker takes
        runtime.launch(sub, live)
        await live.done.wait()
        return live.record, live.retry_in

    # -- executions ---------------------------------------------------------------------------
    async def get(self, execution_id: str, *, settled: bool = True) -> ExecutionRecord | None:
        """The freshest record: this process's live one, else the store's. A live run whose
        status just turned final is returned once its final save landed (``settled``), so a
        status a client has seen survives a crash."""
        live = self.runtime.live.get(execution_id)
        if live is None:
            return await self.executions.get(execution_id)
        if settled and live.record.status in TERMINAL and not live.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.done.wait(), SETTLE_TIMEOUT)
        return live.record

    async def wait(self, execution_id: str, seconds: float) -> ExecutionRecord | None:
        """The record once final, or as it is after ``seconds``."""
        live = self.runtime.live.get(execution_id)
        if live is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.done.wait(), seconds)
            return await self.get(execution_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        task = asyncio.current_task()
        if task is not None:
            self._waiters.add(task)
        try:
            while True:  # owned by another process or worker: only the shared store knows
                record = await self.executions.get(execution_id)
                remaining = deadline - loop.time()
                if record is None or record.status in TERMINAL or remaining <= 0:
                    return record
                await asyncio.sleep(min(self.executions.follow_poll, remaining))
        except asyncio.CancelledError:
            if not self._stopped_waiting(task):
                raise
            return await self.executions.get(execution_id)  # the server stops: as it is now
        finally:
            self._waiters.discard(task)

    def live(self, execution_id: str) -> LiveExecution | None:
        """The run of this process with that id (queued or running), if any."""
        return self.runtime.live.get(execution_id)

    async def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        """Events after ``after_seq``: this process's live log, else the executor's view (the
        store), ending with the closing event (rebuilt for a run a crash cut off)."""
        live = self.runtime.live.get(execution_id)
        if live is not None:
            async for event in live.log.follow(after_seq):
                yield event
            return
        last: ExecutionEvent | None = None
        following = aiter(self.executor.follow(execution_id, after_seq))
        while True:
            task = asyncio.current_task()  # each step may run in another task
            if task is not None:
                self._waiters.add(task)
            try:
                event = await anext(following)
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                if not self._stopped_waiting(task):
                    raise
                raise Interrupted(
                    "The server stopped while following this execution, which runs elsewhere: "
                    "follow it again on another server (Last-Event-ID resumes)"
                ) from None
            finally:
                self._waiters.discard(task)
            last = event
            yield event
        record = await self.executions.get(execution_id)
        if record is None:
            return
        if last is None and after_seq > 0:
            stored = await self.executions.events(execution_id, after_seq - 1)
            last = stored[-1] if stored else None
        closing = closing_event(record, last)
        if closing is not None and closing.seq > after_seq:
            yield closing

    # -- stream clients -------------------------------------------------------------------
    def attach(self, execution_id: str) -> None:
        """A stream client follows this run (again): a pending cancellation for a client that
        left is called off."""
        self.followers[execution_id] = self.followers.get(execution_id, 0) + 1
        handle = self.orphaned.pop(execution_id, None)
        if handle is not None:
            handle.cancel()

    def detach(self, execution_id: str, *, cancel: bool) -> None:
        """A stream client stopped following this run. When it was the last one and ``cancel``
        (it went away and ``cancel_on_disconnect`` is on), the run is cancelled after
        ``stream_resume_grace`` seconds unless a client resumes it (:meth:`attach`) first."""
        left = self.followers.get(execution_id, 0) - 1
        if left > 0:
            self.followers[execution_id] = left
            return
        self.followers.pop(execution_id, None)
        if not cancel or execution_id not in self.runtime.live or execution_id in self.orphaned:
            return
        grace = self.settings.stream_resume_grace
        self.orphaned[execution_id] = self.loop.call_later(grace, self._cancel_orphan, execution_id)

    def _cancel_orphan(self, execution_id: str) -> None:
        self.orphaned.pop(execution_id, None)
        if self.followers.get(execution_id):
            return
        task = self.loop.create_task(self.cancel(execution_id))
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

    async def cancel(self, execution_id: str) -> bool:
        """Cancel a queued or running run wherever the executor has it; False if it cannot."""
        if await self.runtime.cancel(execution_id):  # running in this process
            return True
        return await self.executor.cancel(execution_id)


async def _recover(executions: ExecutionStore) -> None:
    try:
        interrupted = await executions.mark_interrupted()
    except NexusError as exc:
        log.warning("could not recover interrupted executions: %s", exc.message)
        return
    if interrupted:
        log.warning(
            "%d executions were interrupted by the last shutdown; marked interrupted", interrupted
        )
