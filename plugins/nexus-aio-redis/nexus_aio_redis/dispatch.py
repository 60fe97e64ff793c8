"""Distributed execution: async-mode runs go to an arq queue; ``worker`` processes run them.

The serving instance saves the ``queued`` record, then enqueues an arq job whose id is the
execution id (arq refuses a second job with the same id, so a submission is enqueued once). A
worker (``python -m nexus_aio worker --app MODULE:ATTR``) loads the same app, runs the job through
the core ``Runtime`` (same timeouts, sessions, events) and publishes events to the Redis stream as
they happen, so any instance can stream them.

* Cancellation: ``DELETE /executions/{id}`` on any instance sets ``cancel:{id}``; the worker polls
  it while running (and checks it before starting), and cancels the run.
* A worker dying mid-run: arq keeps the job until its in-progress lease (job timeout + grace)
  expires, then another worker retries it (at-least-once, same execution id; event numbering
  continues after a ``retry`` event). After ``redis_max_tries`` tries the execution is ``failed``
  with error type ``WorkerLost``, never left running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from nexus_aio.errors import ConfigurationError, NexusError
from nexus_aio.execution.runtime import EventLog, LiveExecution, Runtime
from nexus_aio.stores.executions import TERMINAL, ExecutionRecord

from .executions import RedisExecutionStore

if TYPE_CHECKING:
    from nexus_aio import Nexus

__all__ = ["JOB_NAME", "build_worker", "run_job", "run_worker"]

log = logging.getLogger("nexus_aio.redis.worker")

JOB_NAME = "nexus_execute"
CANCEL_POLL = 0.2


def queue_name(prefix: str) -> str:
    return prefix + "queue"


async def _fail_lost(store: RedisExecutionStore, record: ExecutionRecord, tries: int) -> None:
    """The last try's worker died too: record a clear failure instead of a run forever 'running'."""
    events = await store.events(record.id)
    record.status = "failed"
    record.finished_at = time.time()
    record.error = {
        "type": "WorkerLost",
        "message": f"The worker running this execution stopped {tries} times; giving up",
        "details": {"tries": tries},
    }
    envelope = {"success": False, "error": record.error, "workflow_id": record.id}
    log_ = EventLog(persist=True)
    log_.events.extend(events)
    log_.push("error", envelope)
    await store.add_events(record.id, log_.events)
    await store.save(record, durable=True)


async def _cancelled_before_start(store: RedisExecutionStore, record: ExecutionRecord) -> None:
    record.status = "cancelled"
    record.finished_at = time.time()
    record.error = {"type": "Cancelled", "message": "The execution was cancelled", "details": {}}
    await store.save(record, durable=True)


async def _watch_cancel(
    store: RedisExecutionStore, execution_id: str, task: asyncio.Task[Any]
) -> None:
    while not task.done():
        await asyncio.sleep(CANCEL_POLL)
        try:
            if await store.cancel_requested(execution_id):
                task.cancel()
                return
        except Exception as exc:  # Redis blip: keep running, check again
            log.warning("cannot check cancellation of %s: %s", execution_id, exc)


async def run_job(
    ctx: dict[str, Any], execution_id: str, context: Any = None, actor: Any = None
) -> str:
    """The arq job: run one queued execution with the core runtime, in this worker."""
    nexus: Nexus = ctx["nexus"]
    max_tries: int = ctx["nexus_max_tries"]
    runtime = nexus.runtime
    assert runtime is not None
    store = runtime.executions
    assert isinstance(store, RedisExecutionStore)
    record = await store.get(execution_id)
    if record is None or record.status in TERMINAL:
        return "skipped"
    job_try = int(ctx.get("job_try", 1))
    if job_try > max_tries:
        await _fail_lost(store, record, max_tries)
        return "lost"
    if await store.cancel_requested(execution_id):
        await _cancelled_before_start(store, record)
        return "cancelled"
    try:
        sub = nexus.submission(
            record.workflow,
            record.inputs,
            mode="async",
            session_id=record.session_id,
            context=context,
            actor=actor,
            request_id=record.request_id,
            execution_id=execution_id,
            checked=True,
        )
    except NexusError as exc:  # e.g. this worker runs another version of the app
        record.status, record.finished_at, record.error = "failed", time.time(), exc.to_dict()
        await store.save(record, durable=True)
        return "failed"
    runtime._acquire()
    live = LiveExecution(record, EventLog(persist=True))
    live.log.events.extend(await store.events(execution_id))
    live.log.on_push = lambda event: store.publish(record, event)
    if job_try > 1:
        live.log.push("retry", {"workflow_id": execution_id, "attempt": job_try})
    runtime.live[execution_id] = live
    live.task = asyncio.create_task(runtime._run_background(sub, live))
    watcher = asyncio.create_task(_watch_cancel(store, execution_id, live.task))
    try:
        await asyncio.shield(live.task)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await store.flush_published()
    return record.status


def build_worker(nexus: Nexus, runtime: Runtime, *, burst: bool = False) -> Any:
    """An arq ``Worker`` running :func:`run_job` for ``nexus`` (its runtime already open)."""
    from arq import func
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from . import _prefix, redis_url

    url = redis_url(nexus)
    if url is None:
        raise ConfigurationError("the worker needs redis_url (NEXUS_REDIS_URL)")
    settings = nexus.settings
    max_tries = int(settings.get("redis_max_tries", 3, type=int))
    longest = max([wf.timeout or 0 for wf in nexus.workflows.values()] + [settings.request_timeout])
    job_timeout = longest + 1
    worker = Worker(
        functions=[func(run_job, name=JOB_NAME, max_tries=max_tries + 1, timeout=job_timeout)],
        queue_name=queue_name(_prefix(nexus)),
        redis_settings=RedisSettings.from_dsn(url),
        ctx={"nexus": nexus, "nexus_max_tries": max_tries},
        burst=burst,
        max_jobs=int(settings.get("redis_worker_jobs", settings.max_concurrent_requests, type=int)),
        poll_delay=float(settings.get("redis_poll_delay", 0.1, type=float)),
        keep_result=60,
        handle_signals=False,
    )
    # arq lets another worker take a job once its in-progress key expires: job timeout + grace.
    grace = float(settings.get("redis_worker_grace", 10.0, type=float))
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
    """Open the stores, run the arq worker until SIGINT/SIGTERM, then close everything."""
    import signal

    nexus.load_plugin_workflows()
    executions = await nexus.hooks.storage_backend("executions")
    sessions = await nexus.hooks.storage_backend("sessions")
    if not isinstance(executions, RedisExecutionStore):
        raise ConfigurationError("the worker needs redis_url (NEXUS_REDIS_URL)")
    await executions.open()
    await sessions.open()
    runtime = Runtime(nexus.settings, nexus.hooks, executions, sessions)
    nexus.runtime = runtime
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    print(f"nexus_aio worker: {len(nexus.workflows)} workflows", flush=True)
    try:
        while not stop.is_set():
            worker = build_worker(nexus, runtime)
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
        await runtime.close()
        nexus.runtime = None
        await sessions.close()
        await executions.close()
