"""A DAG workflow: independent nodes run concurrently; one sink gives the result."""

from __future__ import annotations

import asyncio

from nexus_aio import Workflow


def _tokenize(text: str) -> dict:
    return {"tokens": text.lower().split()}


async def _count(tokens: list[str]) -> dict:
    await asyncio.sleep(0)
    return {"count": len(tokens)}


async def _longest(tokens: list[str]) -> dict:
    return {"longest": max(tokens, key=len) if tokens else None}


def _report(count: int, longest: str | None, title: str = "report") -> dict:
    return {"title": title, "count": count, "longest": longest}


text_stats = Workflow(
    "text-stats", "Tokenize text, then count and find the longest word in parallel"
)
text_stats.add_node("tokenize", _tokenize)
text_stats.add_node("count", _count)
text_stats.add_node("longest", _longest)
text_stats.add_node("report", _report)
text_stats.connect("tokenize", "count", {"tokens": "tokens"})
text_stats.connect("tokenize", "longest", {"tokens": "tokens"})
text_stats.connect("count", "report", {"count": "count"})
text_stats.connect("longest", "report", {"longest": "longest"})
