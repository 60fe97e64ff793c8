"""Distributed execution: async-mode runs go to an arq queue; ``worker`` processes run them.

:class:`ArqExecutor` is the core's ``Executor`` protocol on arq, supplied through the ``executor``
hook when ``redis_execute_async`` is on. The serving instance's execution service saves the
``queued`` record, then the executor enqueues an arq job whose id is the execution id (arq refuses
a second job with the same id, so a submission is enqueued once). A worker
(``python -m nexus_aio worker --app MODULE:ATTR``) loads the same app and runs the job through
its own execution service (same checks, timeouts, sessions, events), publishing events to the
Redis stream as they happen, so any instance can stream them.

* Cancellation: ``DELETE /executions/{id}`` on any instance sets ``cancel:{id}``; the worker's
  store watches it while the run is going (and the job checks it before starting), and the
  worker cancels the run; the instance that asked waits (``redis_cancel_wait``) for the result.
* A worker dying mid-run: arq keeps the job until its in-progress lease (job timeout + grace)
  expires, then another worker retries it (at-least-once, same execution id; event numbering
  continues after a ``retry`` event). After ``redis_max_tries`` tries the execution is ``failed``
  with error type ``WorkerLost``, never left running.
* A workflow with a ``RetryPolicy`` whose attempt failed: the worker leaves the run ``queued``
  and raises arq's ``Retry(defer=...)``, so arq runs the job again after the backoff (on any
  worker, holding no job slot meanwhile). Each retry uses one arq try: a job may take
  ``redis_max_tries + max_attempts - 1`` tries in all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from nexus_aio.envelope import error_envelope
from nexus_aio.errors import Cancelled, ConfigurationError, StoreUnavailable, WorkerLost
from nexus_aio.stores.executions import TERMINAL, ExecutionEvent, ExecutionRecord

from .executions import RedisExecutionStore

if TYPE_CHECKING:
    from nexus_aio import Nexus
    from nexus_aio.execution.runtime import Submission
    from nexus_aio.execution.service import ExecutionService

__all__ = ["JOB_NAME", "ArqExecutor", "build_worker", "run_job", "run_worker"]

log = logging.getLogger("nexus_aio.redis.worker")

JOB_NAME = "nexus_execute"


def queue_name(prefix: str) -> str:
    return prefix + "queue"


class ArqExecutor:
    """Async runs as arq jobs in Redis, run by ``worker`` processes (any instance may follow or
    cancel them: their events and cancel requests live in Redis too)."""

    def __init__(self, service: ExecutionService, store: RedisExecutionStore, prefix: str) -> None:
        from arq.connections import ArqRedis

        self._service = service
        self._store = store
        self._queue = queue_name(prefix)
        self._arq = ArqRedis(connection_pool=store.connection_pool)

    async def submit(self, sub: Submission) -> ExecutionRecord:
        record = self._service.runtime.new_record(sub, "queued")
        await self._store.save(record, durable=True, claim=False)  # a worker's run, not ours
        try:
            await self._arq.enqueue_job(
                JOB_NAME,
                sub.execution_id,
                sub.metadata,
                sub.actor,
                _job_id=sub.execution_id,
                _queue_name=self._queue,
            )
        except Exception as exc:  # the run was not accepted: say so in its record too
            error = StoreUnavailable(f"Could not queue the execution in Redis: {exc}")
            record.status, record.finished_at = "failed", time.time()
            record.error = error.to_dict()
            await self._store.save(record, durable=True, claim=False)
            raise error from exc
        return record

    async def cancel(self, execution_id: str) -> bool:
        return await self._store.request_cancel(execution_id)

    def follow(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[ExecutionEvent]:
        return self._store.follow(execution_id, after_seq)

    async def close(self) -> None:
        return None  # the connection pool is the store's; the store closes it


# -- the worker side ---------------------------------------------------------------------------
async def _end_before_start(
    store: RedisExecutionStore, record: ExecutionRecord, error: Cancelled | WorkerLost
) -> None:
    """Close a run that will not (or no longer) run here: its record and its log's last event."""
    events = await store.events(record.id)
    record.finished_at = time.time()
    record.status = "cancelled" if isinstance(error, Cancelled) else "failed"
    record.error = error.to_dict()
    seq = events[-1].seq + 1 if events else 1
    envelope = error_envelope(error, record.id, record.finished_at)
    await store.add_events(record.id, [ExecutionEvent(seq, "error", envelope, record.finished_at)])
    await store.save(record, durable=True)


async def run_job(
    ctx: dict[str, Any], execution_id: str, context: Any = None, actor: Any = None
) -> str:
    """The arq job: run one queued execution through this worker's execution service."""
    service: ExecutionService = ctx["nexus_service"]
    max_tries: int = ctx["nexus_max_tries"]
    store = service.executions
    assert isinstance(store, RedisExecutionStore)
    record = await store.get(execution_id)
    if record is None or record.status in TERMINAL:
        return "skipped"
    job_try = int(ctx.get("job_try", 1))
    tries = max_tries + _retries(service, record.workflow)
    if job_try > tries:
        lost = WorkerLost(
            f"The worker running this execution stopped {max_tries} times; giving up",
            details={"tries": tries},
        )
        await _end_before_start(store, record, lost)
        return "lost"
    if await store.cancel_requested(execution_id):
        await _end_before_start(store, record, Cancelled())
        return "cancelled"
    try:  # the store hands this run's cancel requests to the service while it runs
        record, retry_in = await service.run_queued(
            record, attempt=job_try, context=context, actor=actor
        )
    finally:
        await store.flush_published()
        store.disown(execution_id)  # ended, or back in the queue for a retry: not ours now
    if retry_in is not None:
        from arq.worker import Retry

        raise Retry(defer=retry_in)
    return record.status


def _retries(service: ExecutionService, workflow: str) -> int:
    """The arq tries a workflow's ``RetryPolicy`` may use beyond the first."""
    compiled = service.nexus.workflows.get(workflow)
    policy = None if compiled is None else compiled.retry
    return 0 if policy is None else policy.max_attempts - 1


def build_worker(nexus: Nexus, service: ExecutionService, *, burst: bool = False) -> Any:
    """An arq ``Worker`` running :func:`run_job` on ``service`` (already open)."""
    from arq import func
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from . import _prefix, redis_url

    url = redis_url(nexus)
    if url is None:
        raise ConfigurationError("the worker needs redis_url (NEXUS_REDIS_URL)")
    settings = nexus.settings
    max_tries = settings.redis_max_tries
    retries = max(
        (wf.retry.max_attempts - 1 for wf in nexus.workflows.values() if wf.retry), default=0
    )
    longest = max([wf.timeout or 0 for wf in nexus.workflows.values()] + [settings.run_timeout])
    job_timeout = longest + 1
    worker = Worker(
        functions=[
            func(run_job, name=JOB_NAME, max_tries=max_tries + retries + 1, timeout=job_timeout)
        ],
        queue_name=queue_name(_prefix(nexus)),
        redis_settings=RedisSettings.from_dsn(url),
        ctx={"nexus_service": service, "nexus_max_tries": max_tries},
        burst=burst,
        max_jobs=settings.redis_worker_jobs or settings.max_concurrent_requests,
        poll_delay=settings.redis_poll_delay,
        keep_result=60,
        handle_signals=False,
    )
    # arq lets another worker take a job once its in-progress key expires: job timeout + grace.
    grace = settings.redis_worker_grace
    worker.in_progress_timeout_s = job_timeout + grace
    return worker


async def _stop_worker(nexus: Nexus, worker: Any, main: asyncio.Task[None]) -> None:
    """No new jobs; running ones get ``shutdown_timeout`` to finish (else arq retries them)."""
    main.cancel()
    await asyncio.gather(main, return_exceptions=True)
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=nexus.settings.shutdown_timeout)
    try:
        await worker.close()
    except Exception as exc:  # the pool may be broken already (Redis down)
        log.warning("closing the arq worker: %s", exc)


async def run_worker(nexus: Nexus) -> None:
    """Open the execution service, run the arq worker until SIGINT/SIGTERM, then close."""
    import signal

    async with nexus.open_service() as service:
        if not isinstance(service.executions, RedisExecutionStore):
            raise ConfigurationError("the worker needs redis_url (NEXUS_REDIS_URL)")
        nexus.service = service  # workflows calling app.execute_workflow run here too
        service.executions.leases = False  # a lost worker's job is arq's to retry, not swept
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopper = asyncio.create_task(stop.wait())
        print(f"nexus_aio worker: {len(nexus.workflows)} workflows", flush=True)
        try:
            while not stop.is_set():
                worker = build_worker(nexus, service)
                main = asyncio.create_task(worker.main())
                await asyncio.wait({main, stopper}, return_when="FIRST_COMPLETED")
                lost = main.done() and not stop.is_set()
                if lost:  # Redis went away: arq's loop ended; start again once it is back
                    exc = main.exception() if not main.cancelled() else None
                    log.warning("worker lost Redis (%s); reconnecting in 1 s", exc)
                await _stop_worker(nexus, worker, main)
                if lost:
                    await asyncio.wait({stopper}, timeout=1.0)
        finally:
            stopper.cancel()
            nexus.service = None
