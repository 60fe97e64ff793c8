"""``serve --workers N``: N processes sharing one port (SO_REUSEPORT) and the SQLite store.

The parent recovers interrupted executions once, then starts N copies of the same ``serve``
command, each binding the port with SO_REUSEPORT so the kernel spreads connections. SIGTERM and
SIGINT are passed on; each worker drains its in-flight requests (``shutdown_timeout``, then its
runs are interrupted); the parent exits 0 when all did, within ``shutdown_timeout`` + 2 s.
In-memory stores would give each process its own state, so that combination is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from typing import TYPE_CHECKING

from nexus_aio.errors import ConfigurationError
from nexus_aio.settings import WORKER_CHILD_ENV

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

EXIT_MARGIN = 2.0  # seconds past shutdown_timeout a worker may take to exit
# A worker that dies is replaced, unless workers keep dying: this many deaths within the window
# stop the whole server (exit 1) instead of restarting in a loop.
MAX_DEATHS = 5
DEATH_WINDOW = 60.0
CHILD_ENV = WORKER_CHILD_ENV  # set in workers: skip start-up recovery, bind with SO_REUSEPORT


def is_worker_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def _recover_once(app: Nexus) -> None:
    """Mark runs left queued or running by a dead server as interrupted, before workers start
    (the execution service does it when opened with ``recover``; the workers then open theirs
    without it, so none interrupts a sibling's runs)."""

    async def recover() -> None:
        async with app.open_service(recover=True):
            pass

    asyncio.run(recover())


def _recover_worker(app: Nexus, pid: int) -> int:
    """Mark the runs a dead worker left queued or running ``interrupted`` (they are recorded
    with the worker as their owner); how many."""
    import socket

    async def recover() -> int:
        store = await app.hooks.storage_backend("executions")
        if store is None:
            return 0
        await store.open()
        try:
            return int(await store.mark_interrupted(owner=f"{socket.gethostname()}:{pid}"))
        finally:
            await store.close()

    try:
        return asyncio.run(recover())
    except Exception as exc:  # the replacement must start even if the store is unwell
        print(f"could not recover the runs of worker {pid}: {exc}", file=sys.stderr, flush=True)
        return 0


def _shared_sessions(app: Nexus) -> bool:
    """Whether the sessions store is shared (a plugin's, e.g. Redis when configured).

    Asking the hook, not whether a plugin implements it: an installed plugin may decline (the
    redis plugin without ``redis_url``), leaving the in-memory store.
    """
    from nexus_aio.stores.sessions import MemorySessionStore

    async def probe() -> bool:
        store = await app.hooks.storage_backend("sessions")
        try:
            return store is not None and not isinstance(store, MemorySessionStore)
        finally:
            if store is not None:
                await store.close()

    return asyncio.run(probe())


def child_argv(argv: list[str]) -> list[str]:
    """The parent's command line with ``--workers N`` removed."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return out


def serve_workers(app: Nexus, args: Namespace, host: str, port: int) -> int:
    workers = int(args.workers)
    if app.settings.database in ("memory", ":memory:") and not _shared_sessions(app):
        raise ConfigurationError(
            f"--workers {workers} with in-memory stores would give each process its own "
            "executions, sessions and rate limits; use the SQLite default (setting 'database') "
            "or a shared backend such as the nexus-aio-redis plugin"
        )
    _recover_once(app)
    argv = child_argv(sys.argv[1:])
    if "--host" not in argv:
        argv += ["--host", host]
    if "--port" not in argv:
        argv += ["--port", str(port)]
    env = {**os.environ, CHILD_ENV: "1"}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "nexus_aio", *argv], env=env)

    procs = [start() for _ in range(workers)]
    print(f"started {workers} workers: {', '.join(str(p.pid) for p in procs)}", flush=True)

    stopping = False
    forwarded = signal.SIGTERM

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping, forwarded
        stopping, forwarded = True, signal.Signals(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    deaths: list[float] = []
    died_alone = False
    while not stopping:
        time.sleep(0.2)
        for index, proc in enumerate(procs):
            if stopping or proc.poll() is None:
                continue
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < DEATH_WINDOW] + [now]
            if len(deaths) >= MAX_DEATHS:
                print(
                    f"worker {proc.pid} exited with {proc.returncode}: {len(deaths)} deaths "
                    f"within {DEATH_WINDOW:g} s, stopping",
                    file=sys.stderr,
                    flush=True,
                )
                died_alone = True
                break
            interrupted = _recover_worker(app, proc.pid)
            procs[index] = start()
            print(
                f"worker {proc.pid} exited with {proc.returncode}: {interrupted} of its runs "
                f"marked interrupted, replaced by worker {procs[index].pid}",
                file=sys.stderr,
                flush=True,
            )
        if died_alone:
            break
    if died_alone:  # a worker died on its own: stop the others, report failure
        forward(signal.SIGTERM, None)
    # Each worker is done by shutdown_timeout + ~0.5 s (its runs are interrupted then); one
    # still there at + 2 s is stuck and is killed, so the whole group exits in that bound.
    deadline = time.monotonic() + app.settings.shutdown_timeout + EXIT_MARGIN
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    # A worker still starting when the signal came ends by it (nothing was in flight there).
    clean = {0, -forwarded, 130 if forwarded == signal.SIGINT else 0}
    return 0 if not died_alone and all(code in clean for code in codes) else 1
