"""Test helpers for nexus_aio apps and plugins, loaded by pytest via the ``pytest11`` entry point.

Servers are real: an aiohttp ``AppRunner`` on a real loopback socket (port 0), so tests talk
HTTP with any client.

Fixtures:
- ``nexus_server``: ``url = await nexus_server(app)`` serves ``app`` in the test's event loop
  (use async clients: aiohttp, httpx.AsyncClient).
- ``nexus_thread_server``: ``url = nexus_thread_server(app)`` serves ``app`` in a background
  thread with its own loop (use blocking clients: requests, httpx.Client).
Both stop the server at the end of the test.

Store contracts (:mod:`nexus_aio.testing.contracts`): ``ExecutionStoreContract``,
``SessionStoreContract`` and ``RateLimitBackendContract`` are test classes a store author
subclasses, giving one ``store`` fixture; every memory, SQLite and Redis store passes them::

    class TestMyExecutionStore(ExecutionStoreContract):
        @pytest.fixture
        async def store(self, clock):
            async with opened(MyExecutionStore(url, clock=clock)) as store:
                yield store
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

try:  # async fixtures that work in pytest-asyncio's strict and auto modes alike
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - pytest-asyncio absent: only the thread fixture works
    async_fixture = pytest.fixture  # type: ignore[assignment]

# Rewritten asserts give the contracts' failures pytest's detailed messages in plugins' runs too.
pytest.register_assert_rewrite("nexus_aio.testing.contracts")

from nexus_aio.testing.contracts import (  # noqa: E402 - after the rewrite hook is registered
    ExecutionStoreContract,
    ManualClock,
    RateLimitBackendContract,
    ScheduleStoreContract,
    SessionExpiryContract,
    SessionStoreContract,
    WebhookOutboxContract,
    opened,
)
from nexus_aio.testing.receiver import http_receiver  # noqa: E402
from nexus_aio.testing.sse import SSEEvent, event_ids, parse_sse, read_sse  # noqa: E402

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus

__all__ = [
    "ExecutionStoreContract",
    "ManualClock",
    "RateLimitBackendContract",
    "RunningServer",
    "SSEEvent",
    "ScheduleStoreContract",
    "ServerProcess",
    "SessionExpiryContract",
    "SessionStoreContract",
    "ThreadedServer",
    "WebhookOutboxContract",
    "event_ids",
    "free_port",
    "http_receiver",
    "make_app",
    "nexus_server",
    "nexus_thread_server",
    "opened",
    "parse_sse",
    "plugin_installed",
    "read_sse",
    "server_process",
    "start_server",
    "wait_for_port",
]


def plugin_installed(name: str) -> bool:
    """Whether a plugin package is installed under entry-point ``name`` (group ``nexus_aio``).

    Core tests that touch a first-party plugin's routes assert its behaviour when it is
    installed and its absence otherwise (CI runs the core tests both ways).
    """
    from importlib.metadata import entry_points

    return any(ep.name == name for ep in entry_points(group="nexus_aio"))


def make_app(**settings: Any) -> Nexus:
    """A ``Nexus`` on in-memory stores with the bundled example workflows registered."""
    from nexus_aio.discovery import load_examples
    from nexus_aio.nexus import Nexus

    settings.setdefault("database", ":memory:")
    app = Nexus(**settings)
    load_examples(app)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until ``proc`` listens on ``port`` (raises if it exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {port} within {timeout} s")


class ServerProcess:
    """``python -m nexus_aio <args> --port P`` as a real subprocess on a free port.

    Its output goes to a temporary file (a pipe nobody reads would fill and stall the server);
    :meth:`stop` returns it.
    """

    def __init__(
        self,
        args: list[str],
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = args
        self.cwd = cwd
        self.env = {**os.environ, "NEXUS_DATABASE": ":memory:", **(env or {})}
        self.output = tempfile.TemporaryFile()
        self._text = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nexus_aio", *args, "--port", str(self.port)],
            cwd=cwd,
            env=self.env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        try:
            wait_for_port(self.port, self.proc)
        except BaseException as exc:
            out = self.stop()
            raise RuntimeError(f"{exc}; server output:\n{out}") from exc
        return self

    def read_output(self) -> str:
        """Everything the server printed so far."""
        if self.output.closed:
            return self._text
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> str:
        """Stop the server (SIGTERM by default) and return everything it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.output.closed:
            self._text = self.read_output()
            self.output.close()
        return self._text

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RunningServer:
    """A started ``AppRunner`` on 127.0.0.1 with its base URL."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner = runner
        self.url = url

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(app: Nexus, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``app`` on a real socket in the running loop; ``await server.stop()`` when done."""
    runner = web.AppRunner(
        app.create_app(), access_log=None, shutdown_timeout=app.settings.shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = runner.addresses
    bound_port = sockets[0][1]
    return RunningServer(runner, f"http://{host}:{bound_port}{app.settings.api_prefix}")


class ThreadedServer:
    """Serve an app from a background thread (for blocking clients like ``requests``)."""

    def __init__(self, app: Nexus) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="nexus-test-server", daemon=True
        )
        self.server: RunningServer | None = None

    def __enter__(self) -> str:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(start_server(self.app), self.loop)
        self.server = future.result(timeout=30)
        return self.server.url

    def call(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        """Run a coroutine in the server's loop (e.g. to inspect stores)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        try:
            if self.server is not None:
                asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@async_fixture
async def nexus_server() -> AsyncIterator[Callable[[Nexus], Awaitable[str]]]:
    servers: list[RunningServer] = []

    async def start(app: Nexus) -> str:
        server = await start_server(app)
        servers.append(server)
        return server.url

    yield start
    for server in reversed(servers):
        await server.stop()


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    """``server_process(["serve", "--app", "mod:app"], cwd=..., env=...)``: a started subprocess."""
    started: list[ServerProcess] = []

    def start(
        args: list[str],
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> ServerProcess:
        server = ServerProcess(args, cwd, env)
        started.append(server)
        return server.__enter__()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nexus_thread_server() -> Iterator[Callable[[Nexus], str]]:
    with contextlib.ExitStack() as stack:

        def start(app: Nexus) -> str:
            return stack.enter_context(ThreadedServer(app))

        yield start
