"""Small workflows that show the basics: typed inputs, defaults, errors, sessions, context."""

from __future__ import annotations

import asyncio
from typing import Literal

from nexus_aio import Context


async def sum(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def greet(name: str, greeting: str = "Hello", punctuation: Literal["!", "."] = "!") -> dict:
    """Greet someone."""
    return {"message": f"{greeting}, {name}{punctuation}"}


def word_count(text: str, unique: bool = False) -> dict:
    """Count words (a sync function: it runs in a worker thread, off the event loop)."""
    words = text.split()
    return {"words": len(set(words)) if unique else len(words)}


async def echo(param: str) -> dict:
    """Return the input unchanged."""
    return {"param": param}


async def counter(ctx: Context, step: int = 1) -> int:
    """Count calls within a session (send ``X-Session-ID``)."""
    ctx.session["count"] = ctx.session.get("count", 0) + step
    return ctx.session["count"]


async def slow(seconds: float = 1.0, ctx: Context = None) -> dict:  # type: ignore[assignment]
    """Sleep, reporting progress ten times (try it in stream or async mode)."""
    for i in range(10):
        await asyncio.sleep(seconds / 10)
        ctx.progress((i + 1) / 10, f"step {i + 1} of 10")
    return {"slept": seconds}


async def fail(message: str = "something went wrong") -> None:
    """Always raise: shows the error envelope."""
    raise RuntimeError(message)
