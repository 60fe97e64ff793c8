"""The app the MCP tests serve (``--app mcp_app:app``): one workflow per behaviour under test."""

from __future__ import annotations

import asyncio
import os

from nexus_aio import Context, Nexus

app = Nexus(enable_mcp=True)


@app.workflow()
async def add(a: int, b: int = 0) -> int:
    """Add two integers."""
    return a + b


@app.workflow("text stats")
def text_stats(text: str):  # no return annotation: no outputSchema
    return {"length": len(text)}


@app.workflow()
async def pid() -> int:
    """The serving process id."""
    return os.getpid()


@app.workflow()
async def steps(count: int = 3, ctx: Context = None) -> dict:  # type: ignore[assignment]
    """Report progress and emit a custom event per step."""
    for i in range(count):
        ctx.emit("step", {"index": i})
        ctx.progress((i + 1) / count, f"step {i + 1} of {count}")
        await asyncio.sleep(0.01)
    return {"steps": count}


@app.workflow()
async def wait(seconds: float = 30.0) -> dict:
    """Sleep (a long run to start, poll and cancel)."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.workflow()
async def boom(message: str = "boom") -> None:
    """Always fails."""
    raise RuntimeError(message)


@app.workflow()
async def remember(ctx: Context, value: str | None = None) -> list:
    """Append ``value`` to the session's list and return it."""
    seen = list(ctx.session.get("seen", []))
    if value is not None:
        seen.append(value)
    ctx.session["seen"] = seen
    return seen


async def _too_slow() -> dict:
    await asyncio.sleep(5)
    return {}


async def _limited() -> str:
    return "ok"


app.register("too_slow", _too_slow, description="Times out.", timeout=0.2)
app.register("limited", _limited, description="Two calls a minute.", rate_limit=2)
