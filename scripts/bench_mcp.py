"""Latency of one MCP tool call next to the same workflow over ``POST /workflows/{name}/execute``.

One real server (``python -m nexus_aio serve`` with the bundled examples, ``NEXUS_ENABLE_MCP=1``,
the embedded SQLite store in a temporary file, ``--log-level warning``) on loopback, and three
clients, each making ``--calls`` calls of ``sum`` at each concurrency (``--concurrency 1,16``:
that many callers in flight, each waiting for its answer before the next call):

- ``http``: aiohttp, ``POST /workflows/sum/execute`` (the REST channel);
- ``mcp-raw``: aiohttp, ``POST /mcp`` with a pre-built JSON-RPC ``tools/call`` (stateless, no
  ``initialize``): the server's cost of the MCP channel, with a client as light as ``http``'s;
- ``mcp-sdk``: the official SDK's ``ClientSession`` over ``streamable_http_client`` (one
  initialized session per caller): what an agent built on the SDK sees, client cost included.

Every answer is checked (a failed call aborts the run). Prints a markdown table: per-call latency
(p50, p90, p99, mean, in ms) and calls per second. Bounded: ``--calls`` per client and level.

    python scripts/bench_mcp.py --calls 2000 --concurrency 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from nexus_aio.testing import ServerProcess

Call = Callable[[int], Awaitable[None]]
WARMUP = 50


async def measure(
    calls: int, concurrency: int, make_caller: Callable[[], Any], warmup: int = WARMUP
) -> list[float]:
    """``calls`` calls through ``concurrency`` callers (after ``warmup`` calls spread over
    them, not measured); the latency of each, in seconds."""
    counter = itertools.count()
    latencies: list[float] = []

    async def worker() -> None:
        async with make_caller() as call:
            for _ in range(-(-warmup // concurrency)):
                await call(-1)
            while (i := next(counter)) < calls:
                started = time.perf_counter()
                await call(i)
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


# -- the three clients --------------------------------------------------------------------------
class HttpCaller:
    def __init__(self, url: str) -> None:
        self.url = f"{url}/workflows/sum/execute"

    async def __aenter__(self) -> Call:
        self.http = aiohttp.ClientSession()

        async def call(i: int) -> None:
            async with self.http.post(self.url, json={"inputs": {"a": i, "b": 1}}) as resp:
                body = await resp.json()
            if resp.status != 200 or body["result"] != i + 1:
                raise RuntimeError(f"http call failed: {resp.status} {body}")

        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()


class McpRawCaller:
    HEADERS = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
    }

    def __init__(self, url: str) -> None:
        self.url = f"{url}/mcp"

    async def __aenter__(self) -> Call:
        self.http = aiohttp.ClientSession()

        async def call(i: int) -> None:
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "sum", "arguments": {"a": i, "b": 1}},
            }
            data = json.dumps(body).encode()
            async with self.http.post(self.url, data=data, headers=self.HEADERS) as resp:
                text = await resp.text()
            if resp.status != 200 or f'"result":{i + 1},' not in text:
                raise RuntimeError(f"mcp call failed: {resp.status} {text[:300]}")

        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()


class McpSdkCaller:
    def __init__(self, url: str) -> None:
        self.url = f"{url}/mcp"

    async def __aenter__(self) -> Call:
        from contextlib import AsyncExitStack

        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        self.stack = AsyncExitStack()
        read, write = (await self.stack.enter_async_context(streamable_http_client(self.url)))[:2]
        session = await self.stack.enter_async_context(ClientSession(read, write))
        await session.initialize()

        async def call(i: int) -> None:
            result = await session.call_tool("sum", {"a": i, "b": 1})
            structured = result.structured_content or {}
            if result.is_error or structured.get("result") != i + 1:
                raise RuntimeError(f"sdk call failed: {result}")

        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()


CLIENTS: dict[str, Callable[[str], Any]] = {
    "http": HttpCaller,
    "mcp-raw": McpRawCaller,
    "mcp-sdk": McpSdkCaller,
}


# -- report -------------------------------------------------------------------------------------
def row(name: str, concurrency: int, latencies: list[float], elapsed: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    return (
        f"| {name} | {concurrency} | {q[49]:.2f} | {q[89]:.2f} | {q[98]:.2f} | "
        f"{statistics.fmean(ms):.2f} | {len(ms) / elapsed:,.0f} |"
    )


async def run(
    url: str, calls: int, levels: list[int], clients: list[str], warmup: int = WARMUP
) -> list[str]:
    lines = [
        "| client | c | p50 ms | p90 ms | p99 ms | mean ms | calls/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for concurrency in levels:
        for name in clients:
            started = time.perf_counter()
            latencies = await measure(calls, concurrency, lambda n=name: CLIENTS[n](url), warmup)
            lines.append(row(name, concurrency, latencies, time.perf_counter() - started))
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per client and level")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="unmeasured calls first")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated levels")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated clients")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    clients = [c.strip() for c in args.clients.split(",")]
    unknown = sorted(set(clients) - CLIENTS.keys())
    if unknown or args.calls < 2:
        parser.error(f"unknown clients {unknown}" if unknown else "--calls must be at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"NEXUS_ENABLE_MCP": "1", "NEXUS_DATABASE": str(Path(tmp) / "nexus.db")}
        server = ServerProcess(["serve", "--log-level", "warning"], cwd=tmp, env=env)
        with server:
            lines = asyncio.run(run(server.url, args.calls, levels, clients, args.warmup))
    cpus = os.cpu_count()
    print(f"nexus_aio MCP vs HTTP execute, `sum`, {args.calls} calls per row, {cpus} CPUs")
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
