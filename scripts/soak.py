"""``make soak``: N clients, T seconds of mixed traffic against a real server, every answer checked.

A real ``python -m nexus_aio serve`` process (the bundled examples, a temporary SQLite database)
gets sync, stream, async, batch and session traffic plus a few injected faults (the ``fail``
workflow, whose 500s are expected and counted apart). At the end:

- no 5xx other than the injected faults, no connection errors, no wrong results;
- every async execution is fetched (``GET /executions/{id}?wait=``) and has its right result;
- every client's session counter equals the sum of the increments the server acknowledged;
- the server's RSS (from /proc/<pid>/status, summed over its worker processes) grew by at most
  ``--rss-limit`` MB and never passed ``--rss-peak-limit`` MB.

``--hostile`` adds what an attacker or a broken client sends (``soak_hostile.py``): bodies that
trickle in, 512 KB records and list pages over them, integers beyond 64 bits, cross-site posts,
cancel storms, malformed chunked and gzip bodies, bad ``Last-Event-ID`` values; with
``--workers 2`` (its default) one worker is SIGKILLed half-way: its in-flight requests are
excused, every acknowledged async run must still end (``interrupted`` counts as accounted for).

Prints a summary and exits 1 on any loss::

    python scripts/soak.py --clients 50 --duration 60
    python scripts/soak.py --clients 50 --duration 60 --hostile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from soak_hostile import HOSTILE_WEIGHTS, Hostile, excusable, kill_one_worker, worker_pids

WEIGHTS = {
    "sync": 35,
    "stream": 15,
    "async": 15,
    "session": 20,
    "batch": 5,
    "health": 5,
    "fault": 5,
}
ASYNC_SECONDS = 0.1
MAX_LOSSES_SHOWN = 20


@dataclass
class Tally:
    """Everything the clients saw, shared by all of them (one event loop: no locking)."""

    ok: Counter[str] = field(default_factory=Counter)
    injected: int = 0
    losses: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[int] = field(default_factory=Counter)
    pending_async: dict[str, Any] = field(default_factory=dict)  # execution id -> result
    sessions: dict[str, int] = field(default_factory=dict)  # session id -> expected count
    slack: Counter[str] = field(default_factory=Counter)  # session id -> unacknowledged steps
    batch_available: bool | None = None

    def lose(self, what: str) -> None:
        self.losses.append(what)


class Soak:
    def __init__(self, url: str, tally: Tally, run_id: str) -> None:
        self.url = url
        self.tally = tally
        self.run_id = run_id
        self.hostile: Hostile | None = None

    # -- one request of each kind ----------------------------------------------------------------
    async def post(
        self, http: aiohttp.ClientSession, kind: str, path: str, body: Any, **kw: Any
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        async with http.post(self.url + path, data=orjson.dumps(body), **kw) as resp:
            raw = await resp.read()
        self.tally.latencies[kind].append(time.perf_counter() - started)
        self.tally.statuses[resp.status] += 1
        return resp.status, orjson.loads(raw) if raw else None

    async def sync(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        a, b = rng.randint(-(10**9), 10**9), rng.randint(-(10**9), 10**9)
        status, data = await self.post(
            http, "sync", "/workflows/sum/execute", {"inputs": {"a": a, "b": b}}
        )
        if status != 200 or data.get("result") != a + b:
            self.tally.lose(f"sync sum({a}, {b}): {status} {data}")
        else:
            self.tally.ok["sync"] += 1

    async def stream(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        if rng.random() < 0.5:
            start = rng.randint(1, 6)
            path, inputs = "/workflows/countdown/execute", {"start": start}
            chunks: list[Any] = list(range(start, 0, -1))
        else:
            message = f"soak {rng.randint(0, 10**6)} hello"
            path, inputs = "/workflows/chat/execute", {"message": message, "delay": 0.005}
            chunks = f"You said: {message}".split()
        started = time.perf_counter()
        body = orjson.dumps({"inputs": inputs, "mode": "stream"})
        async with http.post(self.url + path, data=body) as resp:
            status = resp.status
            raw = await resp.read()
        self.tally.latencies["stream"].append(time.perf_counter() - started)
        self.tally.statuses[status] += 1
        problem = check_stream(status, raw, chunks)
        if problem:
            self.tally.lose(f"stream {path} {inputs}: {problem}")
        else:
            self.tally.ok["stream"] += 1

    async def run_async(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        seconds = round(rng.uniform(0.01, ASYNC_SECONDS), 3)
        status, data = await self.post(
            http,
            "async",
            "/workflows/slow/execute",
            {"inputs": {"seconds": seconds}, "mode": "async"},
        )
        if status != 202 or not data.get("workflow_id"):
            self.tally.lose(f"async slow({seconds}): {status} {data}")
            return
        self.tally.pending_async[data["workflow_id"]] = {"slept": seconds}
        self.tally.ok["async"] += 1

    async def session(self, http: aiohttp.ClientSession, rng: random.Random, sid: str) -> None:
        step = rng.randint(1, 3)
        self.tally.slack[sid] += step  # until acknowledged, it may or may not be stored
        status, data = await self.post(
            http,
            "session",
            "/workflows/counter/execute",
            {"inputs": {"step": step}},
            headers={"X-Session-ID": sid},
        )
        expected = self.tally.sessions.get(sid, 0) + step
        if status != 200:
            self.tally.lose(f"session {sid} +{step}: {status} {data}")
            return
        self.tally.slack[sid] -= step
        self.tally.sessions[sid] = expected  # acknowledged: the server must have stored it
        if self.tally.slack[sid]:  # an earlier step died with a killed worker
            self.tally.sessions[sid] = data.get("result", expected)
            self.tally.slack[sid] = 0
            self.tally.ok["session"] += 1
        elif data.get("result") != expected:
            self.tally.lose(f"session {sid} +{step}: result {data.get('result')} != {expected}")
        else:
            self.tally.ok["session"] += 1

    async def batch(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        if self.tally.batch_available is False:
            return await self.sync(http, rng)
        pairs = [(rng.randint(0, 1000), rng.randint(0, 1000)) for _ in range(3)]
        body = {"workflows": [{"name": "sum", "inputs": {"a": a, "b": b}} for a, b in pairs]}
        status, data = await self.post(http, "batch", "/workflows/batch", body)
        if status == 404 and self.tally.batch_available is not True:
            self.tally.statuses[404] -= 1  # a probe, not a loss: sync traffic takes its share
            if self.tally.batch_available is None:
                print("note: POST /workflows/batch answers 404 (no batch plugin): batch skipped")
            self.tally.batch_available = False
            return None
        self.tally.batch_available = True
        results = batch_results(data)
        if status != 200 or results != [a + b for a, b in pairs]:
            self.tally.lose(f"batch {pairs}: {status} {data}")
        else:
            self.tally.ok["batch"] += 1
        return None

    async def health(self, http: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        async with http.get(self.url + "/health") as resp:
            data = await resp.json()
        self.tally.latencies["health"].append(time.perf_counter() - started)
        self.tally.statuses[resp.status] += 1
        if resp.status != 200 or data.get("status") != "healthy":
            self.tally.lose(f"health: {resp.status} {data}")
        else:
            self.tally.ok["health"] += 1

    async def fault(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        message = f"injected {rng.randint(0, 10**6)}"
        status, data = await self.post(
            http, "fault", "/workflows/fail/execute", {"inputs": {"message": message}}
        )
        error = (data or {}).get("error") or {}
        if status == 500 and error.get("type") == "WorkflowExecutionError":
            self.tally.injected += 1
            if error.get("message") != message:
                self.tally.lose(f"fault: message {error.get('message')!r} != {message!r}")
        else:
            self.tally.lose(f"fault: expected a 500 WorkflowExecutionError, got {status} {data}")

    # -- the clients -----------------------------------------------------------------------------
    async def client(self, index: int, deadline: float, http: aiohttp.ClientSession) -> None:
        rng = random.Random(index)
        sid = f"soak-{self.run_id}-{index}"
        mix = {**WEIGHTS, **(HOSTILE_WEIGHTS if self.hostile else {})}
        kinds, weights = list(mix), list(mix.values())
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            started = time.monotonic()
            try:
                if self.hostile and kind in HOSTILE_WEIGHTS:
                    await self.hostile.one(kind, http, rng)
                elif kind == "sync":
                    await self.sync(http, rng)
                elif kind == "stream":
                    await self.stream(http, rng)
                elif kind == "async":
                    await self.run_async(http, rng)
                elif kind == "session":
                    await self.session(http, rng, sid)
                elif kind == "batch":
                    await self.batch(http, rng)
                elif kind == "health":
                    await self.health(http)
                else:
                    await self.fault(http, rng)
            except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError) as exc:
                if self.hostile and excusable(self.hostile.tally, exc, started):
                    self.hostile.tally.excused += 1
                else:
                    self.tally.lose(f"{kind}: {type(exc).__name__}: {exc}")

    async def verify_async(self, http: aiohttp.ClientSession) -> int:
        """Fetch every async execution; the number that came back right."""
        gate = asyncio.Semaphore(20)
        good = 0

        async def one(execution_id: str, expected: Any) -> None:
            nonlocal good
            async with gate, http.get(f"{self.url}/executions/{execution_id}?wait=30") as resp:
                data = await resp.json()
            killed = self.hostile is not None and self.hostile.tally.killed_at is not None
            if killed and data.get("status") == "interrupted" and self.hostile is not None:
                self.hostile.tally.interrupted += 1
                good += 1
            elif resp.status != 200 or data.get("status") != "succeeded":
                self.tally.lose(f"async {execution_id}: {resp.status} {data}")
            elif data.get("result") != expected:
                self.tally.lose(f"async {execution_id}: result {data.get('result')} != {expected}")
            else:
                good += 1

        await asyncio.gather(*(one(i, r) for i, r in self.tally.pending_async.items()))
        return good

    async def verify_sessions(self, http: aiohttp.ClientSession) -> int:
        good = 0
        for sid, expected in self.tally.sessions.items():
            async with http.get(f"{self.url}/sessions/{sid}") as resp:
                data = await resp.json()
            count = (data.get("state") or {}).get("count")
            slack = self.tally.slack[sid]
            if (
                resp.status != 200
                or not isinstance(count, int)
                or not (expected <= count <= expected + slack)
            ):
                self.tally.lose(f"session {sid}: {resp.status} count {count} != {expected}")
            else:
                good += 1
        return good


def parse_sse(raw: bytes) -> list[tuple[int, str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields and fields["event"] != "keepalive":
            events.append(
                (
                    int(fields.get("id", "0").rpartition(":")[2]),  # "<workflow_id>:<n>"
                    fields["event"],
                    orjson.loads(fields["data"]),
                )
            )
    return events


def check_stream(status: int, raw: bytes, chunks: list[Any]) -> str | None:
    """Why a stream is wrong (None when it is right): ids 1..n in order, ``start`` first,
    every chunk in order, ``complete`` last with all the chunks as its result."""
    if status != 200:
        return f"status {status}: {raw[:300]!r}"
    events = parse_sse(raw)
    if not events:
        return "no events"
    ids = [seq for seq, _, _ in events]
    if ids != list(range(1, len(ids) + 1)):
        return f"event ids out of order: {ids}"
    kinds = [kind for _, kind, _ in events]
    if kinds[0] != "start" or kinds[-1] != "complete" or kinds.count("complete") != 1:
        return f"events {kinds}"
    seen = [data for _, kind, data in events if kind == "chunk"]
    if seen != chunks:
        return f"chunks {seen} != {chunks}"
    if events[-1][2].get("result") != chunks:
        return f"complete result {events[-1][2].get('result')} != {chunks}"
    return None


def batch_results(data: Any) -> list[Any] | None:
    """The results of a batch answer, whatever its envelope nests them under."""
    if not isinstance(data, dict):
        return None
    items = data.get("results")
    if items is None and isinstance(data.get("result"), dict | list):
        inner = data["result"]
        items = inner.get("results") if isinstance(inner, dict) else inner
    if not isinstance(items, list):
        return None
    return [item.get("result") if isinstance(item, dict) else item for item in items]


# -- the server process -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """The RSS of ``pid`` and its worker processes, in MB."""
    total = 0.0
    for one in [pid, *worker_pids(pid)]:
        try:
            with open(f"/proc/{one}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        except OSError:  # a worker that just exited
            continue
    return total


async def wait_listening(port: int, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise TimeoutError(f"server did not listen on port {port} within {within} s")


def start_server(
    port: int, workdir: str, max_concurrent: int, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NEXUS_DATABASE": os.path.join(workdir, "soak.db"),
        "NEXUS_ACCESS_LOG": "false",
        "NEXUS_MAX_CONCURRENT_REQUESTS": str(max_concurrent),
    }
    if args.hostile:
        env["NEXUS_BODY_TIMEOUT"] = str(args.body_timeout)
    log = open(os.path.join(workdir, "server.log"), "wb")  # the process writes it until it exits
    command = [sys.executable, "-m", "nexus_aio", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    if args.workers > 1:
        command += ["--workers", str(args.workers)]
    return subprocess.Popen(
        command,
        cwd=workdir,  # no ./workflows there: the bundled examples are served
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def sample_rss(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


def read_tail(path: str, size: int = 5000) -> str:
    with open(path, "rb") as log:
        return log.read().decode(errors="replace")[-size:]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def summary(tally: Tally, args: argparse.Namespace, elapsed: float, rss: list[float],
            async_good: int, sessions_good: int, hostile: Hostile | None,
            cancelled_good: int) -> bool:  # fmt: skip
    total = sum(tally.statuses.values())
    start, end, peak = rss[0], rss[-1], max(rss)
    unexpected_5xx = sum(n for s, n in tally.statuses.items() if s >= 500) - tally.injected
    rss_ok = end - start <= args.rss_limit and peak <= args.rss_peak_limit
    rate = total / elapsed
    print(f"\nsoak: {args.clients} clients, {elapsed:.1f} s, {total} requests ({rate:.0f}/s)")
    print("kind      ok        p50 ms   p99 ms")
    for kind in WEIGHTS:
        lat = tally.latencies.get(kind, [])
        ok = tally.injected if kind == "fault" else tally.ok[kind]
        print(f"{kind:<9} {ok:<9} {percentile(lat, 0.5):>7.1f}  {percentile(lat, 0.99):>7.1f}")
    print(f"statuses: {dict(sorted(tally.statuses.items()))}")
    print(f"injected faults (expected 500s): {tally.injected}; unexpected 5xx: {unexpected_5xx}")
    print(
        f"async executions retrieved with the right result: {async_good}/{len(tally.pending_async)}"
    )
    print(f"sessions with exact counters: {sessions_good}/{len(tally.sessions)}")
    batch = {None: "not tried", False: "skipped (404)", True: "checked"}[tally.batch_available]
    print(f"batch: {batch}")
    if hostile is not None:
        h = hostile.tally
        print("hostile ok: " + ", ".join(f"{k} {n}" for k, n in h.ok.items()))
        print(f"cancelled runs accounted for: {cancelled_good}/{len(h.cancelled)}; "
              f"largest list page: {h.list_bytes_max} bytes")  # fmt: skip
        if h.killed_pid:
            print(f"worker {h.killed_pid} SIGKILLed: {h.excused} in-flight requests excused, "
                  f"{h.interrupted} acknowledged runs ended interrupted")  # fmt: skip
    quarters = [rss[min(len(rss) - 1, len(rss) * q // 4)] for q in (1, 2, 3)]
    print("server RSS MB at 1/4, 1/2, 3/4 of the run: " + ", ".join(f"{r:.1f}" for r in quarters))
    print(f"server RSS MB: start {start:.1f}, end {end:.1f}, peak {peak:.1f} "
          f"(limit {args.rss_peak_limit:g}), growth {end - start:+.1f} "
          f"(limit {args.rss_limit:g})")  # fmt: skip
    for loss in tally.losses[:MAX_LOSSES_SHOWN]:
        print(f"LOSS: {loss[:500]}")
    if len(tally.losses) > MAX_LOSSES_SHOWN:
        print(f"... and {len(tally.losses) - MAX_LOSSES_SHOWN} more losses")
    passed = not tally.losses and unexpected_5xx == 0 and rss_ok
    print("PASS" if passed else "FAIL")
    return passed


async def soak(args: argparse.Namespace) -> bool:
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    run_id = f"{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="nexus-soak-") as workdir:
        proc = start_server(port, workdir, max(100, 3 * args.clients), args)
        killer: asyncio.Task[None] | None = None
        try:
            await wait_listening(port, proc)
            tally = Tally()
            runner = Soak(url, tally, run_id)
            if args.hostile:
                runner.hostile = Hostile(url, port, runner, args.body_timeout)
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                for _ in range(20):  # warm up: lazily built state should not count as growth
                    await runner.sync(http, random.Random(0))
                rss: list[float] = []
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_rss(proc.pid, rss, stop))
                started = time.monotonic()
                deadline = started + args.duration
                if runner.hostile and args.workers > 1:
                    killer = asyncio.create_task(
                        kill_one_worker(proc.pid, runner.hostile.tally, args.duration / 2)
                    )
                await asyncio.gather(
                    *(runner.client(i, deadline, http) for i in range(args.clients))
                )
                elapsed = time.monotonic() - started
                if killer is not None:
                    await killer
                async_good = await runner.verify_async(http)
                sessions_good = await runner.verify_sessions(http)
                cancelled_good = (
                    await runner.hostile.verify_cancelled(http) if runner.hostile else 0
                )
                stop.set()
                await sampler
                rss.append(rss_mb(proc.pid))
            if proc.poll() is not None:
                tally.lose(f"server exited with {proc.returncode} during the soak")
            return summary(
                tally, args, elapsed, rss, async_good, sessions_good, runner.hostile,
                cancelled_good,
            )  # fmt: skip
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.returncode not in (0, -signal.SIGTERM):
                print(f"server exit code {proc.returncode}; its log:")
                print(read_tail(os.path.join(workdir, "server.log")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument(
        "--rss-limit", type=float, default=50, help="allowed server RSS growth in MB (default 50)"
    )
    parser.add_argument(
        "--rss-peak-limit", type=float, default=1024, help="allowed peak RSS in MB (default 1024)"
    )
    parser.add_argument("--hostile", action="store_true", help="add the hostile mix")
    parser.add_argument(
        "--workers", type=int, default=None, help="serve --workers N (default 2 with --hostile)"
    )
    parser.add_argument(
        "--body-timeout", type=float, default=2.0, help="the server's body_timeout with --hostile"
    )
    parser.add_argument(
        "--report",
        help="also write the summary into this markdown file's soak section (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = 2 if args.hostile else 1
    shown = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, shown)):
        passed = asyncio.run(soak(args))
    if args.report:
        write_report(
            Path(args.report), argv if argv is not None else sys.argv[1:], shown.getvalue()
        )
    return 0 if passed else 1


class Tee(io.TextIOBase):
    """Writes to both streams (the summary is shown and kept for ``--report``)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


SOAK_MARKER = "<!-- soak: written by scripts/soak.py --report, kept by scripts/bench.py -->"


def write_report(path: Path, argv: list[str], shown: str) -> None:
    """Replace (or add) the soak section at the end of ``path``."""
    existing = path.read_text() if path.exists() else ""
    head = existing.split(SOAK_MARKER, 1)[0].rstrip()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = "\n".join(
        [
            SOAK_MARKER,
            "## Soak (`make soak`)",
            "",
            f"Command: `.venv/bin/python scripts/soak.py {' '.join(argv)}` ({stamp}). Every answer",
            "is checked; with `--hostile` the mix adds slow bodies, 512 KB records and list pages,",
            "integers beyond 64 bits, cross-site posts, cancel storms, malformed wire input and a",
            "SIGKILL of one of the two workers half-way ([Testing](testing.md)).",
            "",
            "```text",
            shown.strip(),
            "```",
            "",
        ]
    )
    path.write_text((head + "\n\n" if head else "") + section)


if __name__ == "__main__":
    sys.exit(main())
