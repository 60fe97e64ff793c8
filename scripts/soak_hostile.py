"""The hostile share of ``make soak`` (``--hostile``): traffic an attacker or a broken client sends.

Each kind states the one answer the server owes it; anything else is a loss. Raw sockets carry
the cases an HTTP client would tidy up (a body that trickles in, a malformed chunked body, a gzip
body that does not decode). The worker kill is driven by ``soak.py``; this module only knows
which connection errors it excuses.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

HOSTILE_WEIGHTS = {
    "slow_body": 1,
    "bad_int": 4,
    "cross_site": 4,
    "huge": 2,
    "cancel_storm": 2,
    "bad_wire": 3,
}
HUGE_BYTES = 512 * 1024
LIST_LIMIT_BYTES = 2 * 1024 * 1024  # a 100-item page of huge records, truncated, stays below
KILL_GRACE = 3.0  # connection errors this long after a worker kill are the kill's, not losses


@dataclass
class HostileTally:
    ok: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOSTILE_WEIGHTS, 0))
    cancelled: set[str] = field(default_factory=set)  # ids whose DELETE was sent
    killed_at: float | None = None
    killed_pid: int | None = None
    excused: int = 0  # requests lost with the killed worker
    interrupted: int = 0  # acknowledged async runs the kill interrupted (accounted for)
    list_bytes_max: int = 0

    def killed_recently(self) -> bool:
        return self.killed_at is not None and time.monotonic() - self.killed_at < KILL_GRACE

    def killed_since(self, started: float) -> bool:
        """Whether the worker kill happened while a request begun at ``started`` was open."""
        return self.killed_at is not None and self.killed_at >= started


async def raw_status(host: str, port: int, parts: list[bytes], gap: float, within: float) -> int:
    """Send ``parts`` ``gap`` seconds apart on a fresh connection; the status code answered
    (0 when the server closed without one). Stops sending as soon as an answer arrives."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        answer = asyncio.ensure_future(reader.readline())
        for part in parts:
            if answer.done():
                break
            writer.write(part)
            try:
                await writer.drain()
            except ConnectionError:
                break
            if gap:
                await asyncio.wait({answer}, timeout=gap)
        line = await asyncio.wait_for(answer, within)
    finally:
        writer.close()
    fields = line.split()
    return int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else 0


class Hostile:
    def __init__(self, url: str, port: int, soak: Any, body_timeout: float) -> None:
        self.url = url
        self.port = port
        self.soak = soak  # the Soak: its tally and post()
        self.body_timeout = body_timeout
        self.tally = HostileTally()

    def expect(
        self, kind: str, got: int, want: set[int], detail: Any = "", started: float = 0.0
    ) -> None:
        if got == 0 and started and self.tally.killed_since(started):
            self.tally.excused += 1  # its connection went down with the killed worker
        elif got in want:
            self.tally.ok[kind] += 1
        else:
            self.soak.tally.lose(f"{kind}: status {got} not in {sorted(want)} {detail}"[:500])

    async def slow_body(self) -> None:
        """A body trickling one byte at a time: 408 once ``body_timeout`` passed."""
        head = (
            f"POST /workflows/sum/execute HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
        ).encode()
        parts = [head] + [b" "] * 400
        started = time.monotonic()
        status = await raw_status("127.0.0.1", self.port, parts, 0.2, self.body_timeout + 10)
        self.soak.tally.statuses[status] += 1
        self.expect("slow_body", status, {408}, started=started)

    async def bad_int(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        big = 2**63 + rng.randint(0, 10**6)
        status, data = await self.soak.post(
            http, "bad_int", "/workflows/sum/execute", {"inputs": {"a": big, "b": 1}}
        )
        self.expect("bad_int", status, {400}, data)

    async def cross_site(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        headers = (
            {"Sec-Fetch-Site": "cross-site"}
            if rng.random() < 0.5
            else {"Origin": "https://evil.example"}
        )
        status, data = await self.soak.post(
            http, "cross_site", "/workflows/sum/execute", {"inputs": {"a": 1, "b": 2}},
            headers=headers,
        )  # fmt: skip
        self.expect("cross_site", status, {403}, data)

    async def huge(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """A 512 KB async record, then a page of the list: bounded in bytes, whatever is stored."""
        param = f"{rng.randint(0, 10**9)}:" + "x" * HUGE_BYTES
        status, data = await self.soak.post(
            http, "huge", "/workflows/echo/execute", {"inputs": {"param": param}, "mode": "async"}
        )
        if status != 202:
            self.soak.tally.lose(f"huge: submit {status} {str(data)[:300]}")
            return
        self.soak.tally.pending_async[data["workflow_id"]] = {"param": param}
        async with http.get(self.url + "/executions?limit=100") as resp:
            raw = await resp.read()
        self.tally.list_bytes_max = max(self.tally.list_bytes_max, len(raw))
        if resp.status != 200 or len(raw) > LIST_LIMIT_BYTES:
            self.soak.tally.lose(f"huge: list {resp.status}, {len(raw)} bytes")
        else:
            self.tally.ok["huge"] += 1

    async def cancel_storm(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """Five async runs, each cancelled at once: every DELETE answered below 500."""
        ids = []
        for _ in range(5):
            status, data = await self.soak.post(
                http, "cancel_storm", "/workflows/slow/execute",
                {"inputs": {"seconds": 0.5}, "mode": "async"},
            )  # fmt: skip
            if status != 202:
                self.soak.tally.lose(f"cancel_storm: submit {status} {str(data)[:300]}")
                return
            ids.append(data["workflow_id"])
        for execution_id in ids:
            async with http.delete(f"{self.url}/executions/{execution_id}") as resp:
                await resp.read()
            self.tally.cancelled.add(execution_id)
            self.soak.tally.statuses[resp.status] += 1
            if resp.status >= 500 or resp.status not in (200, 202, 409):
                self.soak.tally.lose(f"cancel_storm: DELETE {execution_id} -> {resp.status}")
                return
        self.tally.ok["cancel_storm"] += 1

    async def bad_wire(self, rng: random.Random) -> None:
        """Malformed chunked, undecodable gzip, a bad Last-Event-ID: each a 400."""
        host = f"Host: 127.0.0.1:{self.port}\r\n"
        case = rng.randrange(3)
        if case == 0:
            request = (
                "POST /workflows/sum/execute HTTP/1.1\r\n" + host
                + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
            )  # fmt: skip
        elif case == 1:
            body = "this is not gzip"
            request = (
                "POST /workflows/sum/execute HTTP/1.1\r\n" + host
                + "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n{body}"
            )  # fmt: skip
        else:
            request = (
                "GET /workflows/countdown/execute?mode=stream HTTP/1.1\r\n" + host
                + "Last-Event-ID: 1_0\r\n\r\n"
            )  # fmt: skip
        started = time.monotonic()
        status = await raw_status("127.0.0.1", self.port, [request.encode()], 0, 10)
        self.soak.tally.statuses[status] += 1
        self.expect("bad_wire", status, {400}, f"case {case}", started)

    async def one(self, kind: str, http: aiohttp.ClientSession, rng: random.Random) -> None:
        if kind == "slow_body":
            await self.slow_body()
        elif kind == "bad_int":
            await self.bad_int(http, rng)
        elif kind == "cross_site":
            await self.cross_site(http, rng)
        elif kind == "huge":
            await self.huge(http, rng)
        elif kind == "cancel_storm":
            await self.cancel_storm(http, rng)
        else:
            await self.bad_wire(rng)

    async def verify_cancelled(self, http: aiohttp.ClientSession) -> int:
        """Every cancelled run ended ``cancelled`` (or ``succeeded`` when it won the race)."""
        gate = asyncio.Semaphore(20)
        good = 0

        async def one(execution_id: str) -> None:
            nonlocal good
            async with gate, http.get(f"{self.url}/executions/{execution_id}?wait=30") as resp:
                data = await resp.json()
            status = data.get("status")
            if status == "interrupted" and self.tally.killed_at is not None:
                self.tally.interrupted += 1
                good += 1
            elif resp.status != 200 or status not in ("cancelled", "succeeded"):
                self.soak.tally.lose(f"cancelled {execution_id}: {resp.status} {status}")
            else:
                good += 1

        await asyncio.gather(*(one(i) for i in self.tally.cancelled))
        return good


def worker_pids(parent: int) -> list[int]:
    """The live children of ``parent`` (``serve --workers N``'s worker processes)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children.append(int(entry))
    return sorted(children)


async def kill_one_worker(parent: int, tally: HostileTally, after: float) -> None:
    """SIGKILL one worker ``after`` seconds in (the parent is to replace it)."""
    await asyncio.sleep(after)
    pids = worker_pids(parent)
    if not pids:
        return
    tally.killed_pid = pids[0]
    tally.killed_at = time.monotonic()
    os.kill(pids[0], signal.SIGKILL)
    print(f"killed worker {pids[0]} (SIGKILL) at {after:.1f} s", flush=True)


def excusable(tally: HostileTally, exc: BaseException, started: float) -> bool:
    """A connection error the worker kill explains: the request was open when the worker was
    killed, or began just after on a pooled connection to it."""
    return (tally.killed_since(started) or tally.killed_recently()) and isinstance(
        exc, aiohttp.ClientConnectionError | ConnectionError | orjson.JSONDecodeError
    )
