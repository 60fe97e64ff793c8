"""Streaming workflows: an async generator yields chunks that SSE clients see as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nexus_aio import Context


async def chat(message: str, delay: float = 0.05) -> AsyncIterator[str]:
    """Stream a reply word by word (``event: chunk`` per word)."""
    for word in f"You said: {message}".split():
        await asyncio.sleep(delay)
        yield word


async def countdown(start: int = 5, ctx: Context = None) -> AsyncIterator[int]:  # type: ignore[assignment]
    """Count down, emitting a custom ``tick`` event before each chunk."""
    for n in range(start, 0, -1):
        ctx.emit("tick", {"remaining": n})
        await asyncio.sleep(0.01)
        yield n
