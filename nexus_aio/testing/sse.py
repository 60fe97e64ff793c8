"""Reading server-sent events in tests: ``(id, event, data)`` triples, ``data`` parsed as JSON.

``id`` is the event's number: ``n`` of an ``id: n`` and of an execute stream's
``id: <workflow_id>:n`` alike (:func:`event_id` gives the id as sent).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

__all__ = ["SSEEvent", "event_ids", "parse_sse", "read_sse"]

SSEEvent = tuple[int, str, Any]


def _event(fields: dict[str, str]) -> SSEEvent:
    return int(fields["id"].rpartition(":")[2]), fields["event"], json.loads(fields["data"])


def event_ids(text: str) -> list[str]:
    """The ``id:`` values of an SSE body as sent (e.g. ``wf-...:3``), in order."""
    return [line[4:] for line in text.splitlines() if line.startswith("id: ")]


def parse_sse(text: str) -> list[SSEEvent]:
    """The events of a complete SSE body (blocks separated by a blank line)."""
    events: list[SSEEvent] = []
    for block in text.split("\n\n"):
        fields = dict(line.partition(": ")[::2] for line in block.splitlines() if line)
        if fields:
            events.append(_event(fields))
    return events


async def read_sse(resp: aiohttp.ClientResponse, limit: int | None = None) -> list[SSEEvent]:
    """Events from a streaming aiohttp response, as they arrive, until EOF or ``limit``."""
    events: list[SSEEvent] = []
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if fields:
            events.append(_event(fields))
            fields = {}
            if limit is not None and len(events) >= limit:
                break
    return events
