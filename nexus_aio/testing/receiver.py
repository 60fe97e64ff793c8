"""A real HTTP endpoint on loopback for a test: a webhook receiver, a collector, a peer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

__all__ = ["http_receiver"]


@contextlib.asynccontextmanager
async def http_receiver(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    path: str = "/hook",
    method: str = "POST",
) -> AsyncIterator[str]:
    """``async with http_receiver(handle) as url:`` serves ``method path`` with ``handler`` on a
    free loopback port until the block ends; ``url`` is the endpoint's full URL."""
    app = web.Application()
    app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}{path}"
    finally:
        await runner.cleanup()
