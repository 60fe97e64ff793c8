"""Skip these tests where the plugin is not installed (core-only CI); shared MCP client helpers."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = "mcp_app:app"

if importlib.util.find_spec("nexus_aio_mcp") is None:
    collect_ignore_glob = ["test_*.py"]


@contextlib.asynccontextmanager
async def mcp_session(
    url: str,
    headers: dict[str, str] | None = None,
    statuses: list[int] | None = None,
    **session_kwargs: Any,
) -> AsyncIterator[Any]:
    """An initialized SDK ``ClientSession`` over ``streamable_http_client`` to ``{url}/mcp``;
    ``statuses`` collects the HTTP status of every response the SDK's HTTP client got."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def record(response: Any) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    timeout = httpx2.Timeout(30, read=120)
    hooks = {"response": [record]}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1], **session_kwargs) as session,
    ):
        await session.initialize()
        yield session
