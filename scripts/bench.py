"""``make bench``: nexus_aio side by side with a bare aiohttp floor, FastAPI and Kailash Nexus.

Servers (each its own process, not pinned: the machine has few cores and wrk needs one too):

- ``nexus``: ``python -m nexus_aio serve`` with the bundled examples (``sum`` is an ``async def``)
  and ``make install``'s plugins, the embedded SQLite store (the default) in a temporary file;
- ``nexus-sync``: the same serving ``scripts/bench_sync_app.py`` (``--app``), whose ``sum`` is a
  plain ``def`` (it runs in the thread pool);
- ``nexus-memory``: ``nexus`` with ``NEXUS_DATABASE=:memory:``;
- ``bare``: ``scripts/bench_bare_aiohttp.py``, the floor (same route, same envelope fields);
- ``fastapi`` (``--with-fastapi``): ``scripts/bench_fastapi_app.py``, hand-written FastAPI on
  uvicorn + uvloop + httptools in ``.bench/fastapi-venv`` (pydantic-validated, same envelope);
- ``kailash`` (``--with-kailash``): Kailash Nexus from PyPI in ``.bench/kailash-venv``
  (``scripts/bench_kailash_app.py``).

Server CPU per request: utime + stime of the server process (and its children, for
``--workers``) from ``/proc/<pid>/stat``, read before and after each wrk run, divided by the
requests that run made.

Load comes from ``wrk -t1`` with ``scripts/wrk_unique_body.lua``: every request body is unique,
across runs too (Kailash Nexus answers repeated identical bodies from a cache). Runs alternate
between servers (nexus, bare, nexus, bare...) and the main case (execute, c=16) takes the median of
``--runs`` runs. nexus_aio runs with its default settings, its access log included (one line per
request, to the server's log file); the peers run without one (aiohttp's is off in the bare
server, uvicorn's in FastAPI's and Kailash's), as their fastest hand-written setups would.

Cases: ``execute`` (c=1/16/64), ``health``, ``sse`` (time to first event; N streams held open:
server RSS), ``memory`` (RSS after a warm-up and after 100,000 more requests), ``workers``
(``serve --workers 2`` vs 1 at c=64), ``async`` (async runs end to end: c=16 aiohttp submitters
for ``--async-seconds``, then every run fetched), ``redis``. Each figure is reported against the
goal of issue 13. The result is a markdown report, ``docs/benchmarks.md`` by default (a
``--quick`` run writes to a temporary file unless ``--output`` says otherwise).

``--guard``: the CI regression guard (see :func:`guard`), also run by ``tests/test_bench_guard.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import pstats
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
LUA = SCRIPTS / "wrk_unique_body.lua"
KAILASH_VENV = ROOT / ".bench" / "kailash-venv"
FASTAPI_VENV = ROOT / ".bench" / "fastapi-venv"
FASTAPI_PACKAGES = ("fastapi", "uvicorn[standard]", "orjson")  # uvloop + httptools come with it
TOOLS_VENV = ROOT / ".bench" / "tools-venv"  # py-spy, for --profile
EXECUTE_PATH = "/workflows/sum/execute"
ALL_CASES = ("execute", "health", "sse", "memory", "workers", "async", "redis", "profile")
DEFAULT_CASES = ALL_CASES[:-1]  # profile: with --profile (needs py-spy and ptrace rights)
CONCURRENCY = (1, 16, 64)
MAIN_CONCURRENCY = 16
NEXUS_SERVERS = ("nexus", "nexus-sync")  # the goals are about these (SQLite, default settings)
ENVELOPE_FIELDS = {"success", "result", "workflow_id", "execution_time", "timestamp"}
# Issue 13's goals.
STREAM_RESUME_GRACE = 5.0  # nexus_aio's default (seconds)
SOAK_MARKER = "<!-- soak: written by scripts/soak.py --report, kept by scripts/bench.py -->"
GOALS = {
    "floor_ratio": {"nexus": 0.70, "nexus-sync": 0.60},
    "fastapi_ratio": 1.5,
    "kailash_ratio": 40.0,
    "p99_c16": 2.0,  # x the floor's p99
    "p99_c64": 10.0,
    "leak_mb": 10.0,
    "sse_mb": 150.0,
    "workers_2": 1.6,
    "async_runs": 2000.0,
}
GUARD_THRESHOLD = 0.15  # nexus_aio / floor req/s, c=16: far below the goal, far above noise


# -- servers --------------------------------------------------------------------------------------
@dataclasses.dataclass
class ServerSpec:
    """How to start one server; ``label`` is what the report calls it."""

    name: str
    label: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str = "/health"
    startup_timeout: float = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_specs(names: list[str], workdir: Path, extra_env: dict[str, str] | None = None) -> dict:
    """The specs for ``names``; each call gets fresh ports and (for SQLite) a fresh file."""
    py = sys.executable
    specs: dict[str, ServerSpec] = {}
    for name in names:
        port = free_port()
        env = dict(extra_env or {})
        if name in ("nexus", "nexus-memory"):
            db = ":memory:" if name == "nexus-memory" else str(workdir / f"nexus-{port}.db")
            env["NEXUS_DATABASE"] = db
            argv = [py, "-m", "nexus_aio", "serve", "--port", str(port)]
            label = "nexus_aio async def (SQLite)" if name == "nexus" else "nexus_aio (:memory:)"
            spec = ServerSpec(name, label, argv, env)
        elif name == "nexus-sync":
            env["NEXUS_DATABASE"] = str(workdir / f"nexus-{port}.db")
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(SCRIPTS), os.environ.get("PYTHONPATH", "")) if p
            )
            argv = [py, "-m", "nexus_aio", "serve", "--app", "bench_sync_app:app"]
            argv += ["--port", str(port)]
            spec = ServerSpec(name, "nexus_aio def (SQLite)", argv, env)
        elif name == "bare":
            argv = [py, str(SCRIPTS / "bench_bare_aiohttp.py"), "--port", str(port)]
            spec = ServerSpec(name, "bare aiohttp", argv, env)
        elif name == "fastapi":
            argv = [
                str(FASTAPI_VENV / "bin" / "python"),
                str(SCRIPTS / "bench_fastapi_app.py"),
                "--port",
                str(port),
            ]
            spec = ServerSpec(name, "FastAPI (uvicorn)", argv, env)
        elif name == "kailash":
            argv = [
                str(KAILASH_VENV / "bin" / "python"),
                str(SCRIPTS / "bench_kailash_app.py"),
                "--port",
                str(port),
                "--mcp-port",
                str(free_port()),
            ]
            spec = ServerSpec(name, "Kailash Nexus", argv, env, startup_timeout=90.0)
        else:
            raise SystemExit(f"unknown server {name!r}")
        spec.env["BENCH_PORT"] = str(port)
        specs[name] = spec
    return specs


class Server:
    """A running server process: its URL, its pid, its RSS."""

    def __init__(self, spec: ServerSpec, workdir: Path) -> None:
        self.spec = spec
        self.port = int(spec.env["BENCH_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **spec.env}
        env.pop("BENCH_PORT", None)
        self.log_path = workdir / f"{spec.name}-{self.port}.log"
        self._log = self.log_path.open("wb")
        # cwd: an empty folder, so ``serve`` picks the bundled examples (no ./workflows there).
        self.proc = subprocess.Popen(
            spec.argv, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.spec.label} exited at startup; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + self.spec.ready_path, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{self.spec.label} not ready in {self.spec.startup_timeout} s")

    def rss_mb(self) -> float:
        """Resident set size of the server process, from /proc (MB = 2**20 bytes)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process and its live children have used."""
        return process_tree_cpu_seconds(self.proc.pid)

    def main_thread_cpu_seconds(self) -> float:
        """CPU time of the process's main thread alone (the event loop, for every server here):
        the rest of :meth:`cpu_seconds` is other threads (nexus_aio's SQLite writer, thread
        pool) and child processes."""
        stat = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat").read_text()
        return parse_proc_stat(stat)[1] / CLOCK_TICKS

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime in clock ticks) from a ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may hold spaces and parentheses itself, so
    the fields are counted from the last ``)``: state is field 3, ppid 4, utime 14, stime 15.
    """
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def process_tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (``serve --workers`` forks), seconds."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stats[int(entry.name)] = parse_proc_stat((entry / "stat").read_text())
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in stats.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(stats[p][1] for p in tree if p in stats) / CLOCK_TICKS


@contextlib.contextmanager
def running(specs: dict[str, ServerSpec], workdir: Path) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for name, spec in specs.items():
            servers[name] = Server(spec, workdir)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def check_sum(server: Server) -> None:
    """Fail loudly unless the server really adds (a wrong answer is no benchmark)."""
    body = json.dumps({"inputs": {"a": 2, "b": 40}}).encode()
    req = urllib.request.Request(
        server.url + EXECUTE_PATH, body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        data = json.loads(resp.read())
    result = data.get("result")
    if result is None:  # Kailash Nexus: {"outputs": {"<node>": {"result": ...}}}
        result = next(iter(data.get("outputs", {}).values()), {}).get("result")
    if result != 42:
        raise SystemExit(f"{server.spec.label} answered {data!r} for 2 + 40")
    if server.spec.name != "kailash" and set(data) != ENVELOPE_FIELDS:
        raise SystemExit(f"{server.spec.label}: envelope fields {sorted(data)} are not nexus_aio's")


# -- wrk ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx/3xx answers
    cpu_us: float | None = None  # server CPU microseconds per request over the run
    cpu_main_us: float | None = None  # the part of cpu_us spent in the main (event-loop) thread

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse_wrk(output: str) -> WrkResult:
    """The ``BENCH_JSON`` line the Lua script's ``done()`` prints."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON ") :])
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=sum(data["errors"].values()),
            )
    raise RuntimeError(f"no BENCH_JSON line in wrk output:\n{output}")


class Wrk:
    """Runs wrk; hands every run its own counter range so bodies never repeat."""

    RANGE = 50_000_000  # more requests than any run makes

    def __init__(self) -> None:
        self.runs = 0

    def run(
        self,
        url: str,
        connections: int,
        seconds: float,
        get: bool = False,
        server: Server | None = None,
    ) -> WrkResult:
        """One wrk run; with ``server``, also its CPU microseconds per request over the run."""
        self.runs += 1
        args = ["get"] if get else [f"start={self.runs * self.RANGE}"]
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(round(seconds), 1)}s",  # wrk takes whole seconds only
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            *args,
        ]
        cpu_before = server.cpu_seconds() if server else 0.0
        main_before = server.main_thread_cpu_seconds() if server else 0.0
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        result = parse_wrk(out)
        if server is not None:
            result.cpu_us = cpu_per_request_us(server.cpu_seconds() - cpu_before, result.requests)
            result.cpu_main_us = cpu_per_request_us(
                server.main_thread_cpu_seconds() - main_before, result.requests
            )
        return result


def cpu_per_request_us(cpu_seconds: float, requests: int) -> float | None:
    return cpu_seconds * 1e6 / requests if requests else None


async def _aiohttp_load(url: str, connections: int, seconds: float, start: int) -> WrkResult:
    """wrk's job done by ``connections`` aiohttp clients (unique bodies, like the Lua script).

    Only for the guard where wrk is missing: the client is Python too, so it measures less of the
    server (a ratio nearer 1) than wrk does; the guard's threshold allows for that.
    """
    import aiohttp

    latencies: list[float] = []
    errors = 0
    counter = iter(range(start, start + Wrk.RANGE))
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                body = b'{"inputs":{"a":%d,"b":%d}}' % (next(counter), k)
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        await resp.read()
                        ok = resp.status < 400
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(connections)))
        elapsed = time.perf_counter() - began
    ms = [x * 1000 for x in latencies]
    return WrkResult(len(ms), elapsed, percentile(ms, 0.5), percentile(ms, 0.99), errors)


@dataclasses.dataclass
class GuardResult:
    ratio: float
    nexus_rps: list[float]
    floor_rps: list[float]
    loadgen: str
    threshold: float

    @property
    def passed(self) -> bool:
        return self.ratio >= self.threshold

    def summary(self) -> str:
        runs = ", ".join(
            f"{n:,.0f}/{f:,.0f}" for n, f in zip(self.nexus_rps, self.floor_rps, strict=True)
        )
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"bench guard {verdict}: nexus_aio / bare aiohttp = {self.ratio:.2f} at c=16 (median"
            f" of {len(self.nexus_rps)} alternating rounds, {self.loadgen}; threshold"
            f" {self.threshold:.2f}, goal {GOALS['floor_ratio']['nexus']:.2f}); req/s per round"
            f" (nexus_aio/floor): {runs}"
        )


def guard(
    workdir: Path,
    rounds: int = 3,
    seconds: float = 1.0,
    threshold: float = GUARD_THRESHOLD,
    loadgen: str = "auto",
) -> GuardResult:
    """The CI regression guard: nexus_aio (``async def sum``, SQLite, every installed plugin) vs
    the bare aiohttp floor, both started here, in ``rounds`` alternating c=16 rounds.

    The ratio is the median of the rounds' ratios (each round measures both servers back to
    back, so load from elsewhere hits both alike); ``threshold`` sits far below the goal (0.70)
    and far below today's figure, so only a large regression fails. ``loadgen``: ``wrk`` (used
    when installed, ``auto``) or ``aiohttp`` (a Python client; see :func:`_aiohttp_load`).
    """
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "aiohttp"
    wrk = Wrk()

    def load(server: Server) -> WrkResult:
        url = server.url + EXECUTE_PATH
        if loadgen == "wrk":
            return wrk.run(url, MAIN_CONCURRENCY, seconds)
        wrk.runs += 1
        return asyncio.run(_aiohttp_load(url, MAIN_CONCURRENCY, seconds, wrk.runs * Wrk.RANGE))

    nexus_rps: list[float] = []
    floor_rps: list[float] = []
    with running(server_specs(["nexus", "bare"], workdir), workdir) as servers:
        for server in servers.values():
            check_sum(server)
            load(server)  # warm-up
        for _ in range(rounds):
            nexus_rps.append(load(servers["nexus"]).rps)
            floor_rps.append(load(servers["bare"]).rps)
    ratios = [n / f if f else 0.0 for n, f in zip(nexus_rps, floor_rps, strict=True)]
    return GuardResult(statistics.median(ratios), nexus_rps, floor_rps, loadgen, threshold)


# -- cases ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    servers: list[str]
    cases: list[str]
    duration: float
    runs: int
    warmup: float
    sse_streams: int
    sse_ttfe_samples: int
    leak_requests: int
    async_seconds: float
    quick: bool
    workdir: Path


def median_run(results: list[WrkResult]) -> WrkResult:
    """The run with the median req/s (its latencies go with it)."""
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[len(ordered) // 2]


def run_execute(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """Execute at each concurrency: servers alternate within every round."""
    out: dict[str, Any] = {"rows": {}, "rss": {}}
    specs = server_specs(cfg.servers, cfg.workdir)
    with running(specs, cfg.workdir) as servers:
        for server in servers.values():
            check_sum(server)
            out["rss"][server.spec.name] = {"idle": server.rss_mb()}
        for server in servers.values():
            wrk.run(server.url + EXECUTE_PATH, 16, cfg.warmup)
        for conc in CONCURRENCY:
            runs = cfg.runs if conc == MAIN_CONCURRENCY else 1
            per: dict[str, list[WrkResult]] = {name: [] for name in servers}
            for i in range(runs):
                for name, server in servers.items():
                    res = wrk.run(server.url + EXECUTE_PATH, conc, cfg.duration, server=server)
                    per[name].append(res)
                    log(
                        f"execute c={conc} run {i + 1}/{runs} {server.spec.label}: "
                        f"{res.rps:,.0f} req/s p50 {res.p50_ms:.2f} ms p99 {res.p99_ms:.2f} ms"
                        f" CPU {_us(res.cpu_us)} us/req ({_us(res.cpu_main_us)} main thread)"
                    )
            for name, results in per.items():
                out["rows"][(name, conc)] = {
                    "median": median_run(results),
                    "all": [r.rps for r in results],
                }
        for server in servers.values():
            out["rss"][server.spec.name]["loaded"] = server.rss_mb()
        out["labels"] = {name: s.spec.label for name, s in servers.items()}
    return out


def run_health(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": {}}
    specs = server_specs(cfg.servers, cfg.workdir)
    with running(specs, cfg.workdir) as servers:
        for server in servers.values():
            wrk.run(server.url + "/health", 16, cfg.warmup, get=True)
        for name, server in servers.items():
            res = wrk.run(
                server.url + "/health", MAIN_CONCURRENCY, cfg.duration, get=True, server=server
            )
            out["rows"][name] = res
            log(f"health c=16 {server.spec.label}: {res.rps:,.0f} req/s")
        out["labels"] = {name: s.spec.label for name, s in servers.items()}
    return out


def sse_request(name: str, seconds: float) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of a stream that starts at once and then waits ``seconds``."""
    if name in ("bare", "fastapi"):
        return f"/sse?seconds={seconds:g}", {}
    if name == "kailash":
        return "/workflows/slow/execute", {"inputs": {"seconds": seconds}, "mode": "stream"}
    return "/workflows/slow/execute?mode=stream", {"inputs": {"seconds": seconds}}


async def _first_event(session: Any, url: str, body: dict[str, Any]) -> tuple[float, Any]:
    """Open a stream; return (seconds to the end of the first event, the open response)."""
    started = time.perf_counter()
    resp = await session.post(url, json=body)
    if resp.status != 200:
        text = await resp.text()
        resp.release()
        raise RuntimeError(f"stream refused: {resp.status} {text[:200]}")
    buf = b""
    while b"\n\n" not in buf:
        chunk = await resp.content.readany()
        if not chunk:
            raise RuntimeError("stream ended before its first event")
        buf += chunk
    return time.perf_counter() - started, resp


async def _sse_case(server: Server, name: str, samples: int, streams: int) -> dict[str, Any]:
    import aiohttp

    path, body = sse_request(name, 120.0)
    url = server.url + path
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        ttfe = []
        for _ in range(samples):
            seconds, resp = await _first_event(session, url, body)
            ttfe.append(seconds * 1000)
            resp.close()
        # Let the server end the closed streams' runs: nexus_aio keeps a dropped stream's run
        # for stream_resume_grace (5 s by default) in case its client reconnects.
        await asyncio.sleep(STREAM_RESUME_GRACE + 1.0 if name.startswith("nexus") else 0.5)
        rss_before = server.rss_mb()
        opened = await asyncio.gather(
            *(_first_event(session, url, body) for _ in range(streams)), return_exceptions=True
        )
        ok = [r for r in opened if not isinstance(r, BaseException)]
        failures = [r for r in opened if isinstance(r, BaseException)]
        await asyncio.sleep(0.5)
        rss_open = server.rss_mb()
        for _, resp in ok:
            resp.close()
    ttfe.sort()
    return {
        "ttfe_p50": statistics.median(ttfe),
        "ttfe_p99": ttfe[min(len(ttfe) - 1, int(len(ttfe) * 0.99))],
        "rss_before": rss_before,
        "rss_open": rss_open,
        "opened": len(ok),
        "failed": len(failures),
        "first_failure": repr(failures[0]) if failures else "",
    }


def run_sse(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """Time to first event, then ``sse_streams`` streams held open at once: server RSS."""
    out: dict[str, Any] = {"rows": {}, "labels": {}}
    # 1,000 live streams are 1,000 concurrent executions: raise nexus_aio's default cap (100).
    env = {"NEXUS_MAX_CONCURRENT_REQUESTS": str(cfg.sse_streams + 100)}
    for name in cfg.servers:
        specs = server_specs([name], cfg.workdir, env)
        with running(specs, cfg.workdir) as servers:
            server = servers[name]
            out["labels"][name] = server.spec.label
            res = asyncio.run(_sse_case(server, name, cfg.sse_ttfe_samples, cfg.sse_streams))
            out["rows"][name] = res
            log(
                f"sse {server.spec.label}: first event p50 {res['ttfe_p50']:.2f} ms; "
                f"{res['opened']} streams open, RSS {res['rss_open']:.1f} MB"
                + (f" ({res['failed']} failed: {res['first_failure']})" if res["failed"] else "")
            )
    return out


def run_memory(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """RSS at idle, after a warm-up, and after ``leak_requests`` requests (unique bodies)."""
    out: dict[str, Any] = {"rows": {}, "labels": {}}
    names = [n for n in cfg.servers if n != "kailash"]  # 100k requests take minutes there
    for name in names:
        specs = server_specs([name], cfg.workdir)
        with running(specs, cfg.workdir) as servers:
            server = servers[name]
            out["labels"][name] = server.spec.label
            idle = server.rss_mb()
            warm = wrk.run(server.url + EXECUTE_PATH, 16, cfg.warmup)
            warmed = server.rss_mb()
            total = 0
            errors = 0
            chunk = max(2.0, min(10.0, cfg.leak_requests / max(warm.rps, 1.0) / 3))
            while total < cfg.leak_requests:
                res = wrk.run(server.url + EXECUTE_PATH, 16, chunk)
                total += res.requests
                errors += res.errors
            time.sleep(0.5)
            after = server.rss_mb()
            out["rows"][name] = {
                "idle": idle,
                "warm": warmed,
                "after": after,
                "requests": total,
                "errors": errors,
                "warmup_requests": warm.requests,
            }
            log(
                f"memory {server.spec.label}: idle {idle:.1f} MB, after warm-up {warmed:.1f} MB,"
                f" after {total:,} requests {after:.1f} MB"
            )
    return out


def run_workers(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """``serve --workers 1`` and ``--workers 2`` side by side, alternating, c=64."""
    if not any((ROOT / "nexus_aio" / p).exists() for p in ("workers.py", "web/workers.py")):
        note = "skipped: `serve --workers N` does not exist yet (no nexus_aio/web/workers.py)"
        log(f"workers: {note}")
        return {"note": note}
    out: dict[str, Any] = {"rows": {}}
    with contextlib.ExitStack() as stack:
        servers: dict[int, Server] = {}
        for workers in (1, 2):
            specs = server_specs(["nexus"], cfg.workdir)
            specs["nexus"].argv += ["--workers", str(workers)]
            servers[workers] = stack.enter_context(running(specs, cfg.workdir))["nexus"]
        for server in servers.values():
            wrk.run(server.url + EXECUTE_PATH, 64, cfg.warmup)
        per: dict[int, list[WrkResult]] = {w: [] for w in servers}
        for _ in range(cfg.runs):
            for workers, server in servers.items():
                url = server.url + EXECUTE_PATH
                per[workers].append(wrk.run(url, 64, cfg.duration, server=server))
        for workers, results in per.items():
            res = median_run(results)
            out["rows"][workers] = res
            log(f"workers={workers}: {res.rps:,.0f} req/s at c=64, CPU {_us(res.cpu_us)} us/req")
    return out


# -- profile ---------------------------------------------------------------------------------------
# Frames every sample of a thread shares (process and thread entry points): no information.
_ROOT_FRAMES = {
    "_run_module_as_main",
    "_run_code",
    "<module>",
    "main",
    "cmd_serve",
    "Nexus.start",
    "serve",
    "run_app",
    "Thread._bootstrap",
    "Thread._bootstrap_inner",
    "Thread.run",
}


def summarise_pyspy(raw: str, top: int = 15) -> dict[str, Any]:
    """Shares of a ``py-spy record --format raw -t`` profile (collapsed stacks, one per line:
    ``thread (tid): name;func (file:line);... count``): per thread, per function (inclusive, the
    function anywhere on the stack) and per line (self, the innermost frame), in % of samples.
    Files are shown from the package folder on (``nexus_aio/web/app.py``)."""
    threads: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[-1].strip() or frames[0]
        threads[thread] = threads.get(thread, 0) + n
        funcs = set()
        for frame in frames[1:]:
            func, _, where = frame.partition(" (")
            path = where.rstrip(")")
            short = "/".join(path.split("/")[-2:])
            funcs.add(f"{func} ({short.rsplit(':', 1)[0]})" if func not in _ROOT_FRAMES else "")
        for func in funcs - {""}:
            inclusive[func] = inclusive.get(func, 0) + n
        if len(frames) > 1:
            func, _, where = frames[-1].partition(" (")
            key = f"{func} ({'/'.join(where.rstrip(')').split('/')[-2:])})"
            own[key] = own.get(key, 0) + n

    def shares(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(k, 100 * v / total) for k, v in ranked] if total else []

    return {
        "samples": total,
        "threads": shares(threads),
        "inclusive": shares(inclusive),
        "self": shares(own),
    }


def ensure_pyspy(log: Any) -> Path:
    """``pip install py-spy`` into ``.bench/tools-venv`` once; the path of its binary."""
    binary = TOOLS_VENV / "bin" / "py-spy"
    if not binary.exists():
        log(f"installing py-spy into {TOOLS_VENV.relative_to(ROOT)} ...")
        TOOLS_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        pip = [str(TOOLS_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "py-spy"]
        subprocess.run(pip, check=True)
    return binary


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (``/proc/<pid>/task/<tid>/stat``)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[int(task.name)] = parse_proc_stat((task / "stat").read_text())[1] / CLOCK_TICKS
    return out


def run_profile(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """py-spy over one c=16 wrk run of each nexus_aio workflow kind, and each thread's CPU."""
    pyspy = ensure_pyspy(log)
    out: dict[str, Any] = {"rows": {}, "labels": {}}
    for name in NEXUS_SERVERS:
        specs = server_specs([name], cfg.workdir)
        with running(specs, cfg.workdir) as servers:
            server = servers[name]
            out["labels"][name] = server.spec.label
            wrk.run(server.url + EXECUTE_PATH, MAIN_CONCURRENCY, cfg.warmup)
            raw_path = cfg.workdir / f"profile-{name}.txt"
            seconds = str(max(round(cfg.duration), 1) + 1)
            argv = [str(pyspy), "record", "--pid", str(server.proc.pid), "--format", "raw"]
            spy = subprocess.Popen(
                [*argv, "--nonblocking", "-t", "-r", "100", "-d", seconds, "-o", str(raw_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)  # py-spy attaches
            before = thread_cpu_seconds(server.proc.pid)
            res = wrk.run(server.url + EXECUTE_PATH, MAIN_CONCURRENCY, cfg.duration, server=server)
            after = thread_cpu_seconds(server.proc.pid)
            _, err = spy.communicate(timeout=60)
            pid = server.proc.pid
            per_thread = sorted(
                ((after[t] - before.get(t, 0.0)) * 1e6 / max(res.requests, 1), t) for t in after
            )
            main_us = next(us for us, t in per_thread if t == pid)
            others = [us for us, t in reversed(per_thread) if t != pid and us > 0]
            row: dict[str, Any] = {"wrk": res, "main_us": main_us, "other_us": others}
            if spy.returncode == 0 and raw_path.exists():
                row.update(summarise_pyspy(raw_path.read_text()))
            else:
                row["error"] = f"py-spy failed ({spy.returncode}): {err.strip()[-300:]}"
            out["rows"][name] = row
            busiest = ", ".join(f"{u:,.0f}" for u in others[:4])
            log(
                f"profile {server.spec.label}: {res.rps:,.0f} req/s under py-spy; CPU us/req main"
                f" thread {main_us:,.0f}, other threads {busiest}"
            )
    out["calls"] = run_calls(cfg, wrk, log)
    return out


CALL_LAYERS = ("aiohttp", "nexus_aio", "handler", "python", "other")


def call_layer(filename: str) -> str:
    """The layer a profiled function belongs to: aiohttp, nexus_aio (with its plugins), the
    bench's own handler (``scripts/``), Python (builtins and the standard library), other."""
    if filename.startswith("~") or filename.startswith("<"):
        return "python"  # builtins (``~``) and frozen modules (``<frozen abc>``)
    if "site-packages/" in filename:
        package = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        if package.startswith("nexus_aio"):
            return "nexus_aio"
        return "aiohttp" if package == "aiohttp" else "other"
    if "/nexus_aio/" in filename or "/plugins/nexus-aio-" in filename:
        return "nexus_aio"
    if "/scripts/" in filename:
        return "handler"
    if "/lib/python3" in filename:
        return "python"
    return "other"


def count_calls(stats_path: Path, requests: int) -> dict[str, float]:
    """Python-level calls per request in each layer, from a cProfile dump over ``requests``."""
    stats = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    per_layer = dict.fromkeys(CALL_LAYERS, 0.0)
    for (filename, _, _), (_, calls, *_) in stats.items():
        if filename.endswith("bench_calls.py"):
            continue  # the signal handler that stops the profiler
        per_layer[call_layer(filename)] += calls / max(requests, 1)
    return per_layer


def run_calls(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """cProfile (``scripts/bench_calls.py``) over one c=16 wrk run of the floor and of each
    nexus_aio workflow kind, after the warm-up: exact Python calls per request, by layer."""
    out: dict[str, Any] = {}
    for name in ("bare", *NEXUS_SERVERS):
        spec = server_specs([name], cfg.workdir)[name]
        stats_path = cfg.workdir / f"calls-{name}.pstats"
        python, *args = spec.argv
        spec = dataclasses.replace(
            spec, argv=[python, str(SCRIPTS / "bench_calls.py"), str(stats_path), *args]
        )
        with running({name: spec}, cfg.workdir) as servers:
            server = servers[name]
            wrk.run(server.url + EXECUTE_PATH, MAIN_CONCURRENCY, cfg.warmup)
            os.kill(server.proc.pid, signal.SIGUSR2)
            res = wrk.run(server.url + EXECUTE_PATH, MAIN_CONCURRENCY, min(cfg.duration, 3.0))
            os.kill(server.proc.pid, signal.SIGUSR1)
            try:
                server.proc.wait(60)
                layers = count_calls(stats_path, res.requests)
            except (OSError, TypeError, EOFError, subprocess.TimeoutExpired) as exc:
                log(f"calls {spec.label}: no profile written ({exc}); left out of the report")
                continue
        out[name] = {"label": spec.label, "requests": res.requests, "layers": layers}
        log(f"calls {spec.label}: {sum(layers.values()):,.0f} Python calls per request")
    return out


# -- async runs -----------------------------------------------------------------------------------
def parse_iso(text: str) -> float:
    """Epoch seconds of a record's ``2026-11-28T15:22:04.742Z`` timestamp."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


def account_runs(
    submitted: list[tuple[str, int, int]], records: dict[str, dict[str, Any] | None]
) -> dict[str, Any]:
    """Check every accepted run against its record; the figures of the async case.

    ``submitted``: (execution id, a, b) of every 202; ``records``: the record fetched for each id
    (None: not found). A run is accounted for when its record says ``succeeded`` with ``a + b``.
    Runs/s completed: succeeded runs over the span from the first ``created_at`` to the last
    ``finished_at`` (the queue's drain after the submitters stop is inside the span).
    """
    succeeded, missing, wrong = 0, 0, 0
    statuses: dict[str, int] = {}
    created, started, finished, queue_delay = [], [], [], []
    for execution_id, a, b in submitted:
        record = records.get(execution_id)
        if record is None:
            missing += 1
            continue
        status = record.get("status", "?")
        statuses[status] = statuses.get(status, 0) + 1
        if status != "succeeded":
            continue
        if record.get("result") != a + b:
            wrong += 1
            continue
        succeeded += 1
        c, st, f = (parse_iso(record[k]) for k in ("created_at", "started_at", "finished_at"))
        created.append(c)
        started.append(st)
        finished.append(f)
        queue_delay.append((st - c) * 1000)
    span = (max(finished) - min(created)) if succeeded else 0.0
    return {
        "accepted": len(submitted),
        "succeeded": succeeded,
        "missing": missing,
        "wrong_result": wrong,
        "statuses": statuses,
        "span_s": span,
        "runs_per_s": succeeded / span if span > 0 else 0.0,
        "queue_p50_ms": percentile(queue_delay, 0.50),
        "queue_p99_ms": percentile(queue_delay, 0.99),
        "all_accounted": succeeded == len(submitted) and bool(submitted),
    }


async def async_runs(url: str, seconds: float, submitters: int, cpu: Any = None) -> dict[str, Any]:
    """``submitters`` clients submit ``sum`` with ``mode: async`` for ``seconds``; then each run
    is fetched (``GET /executions/{id}?wait=``) and accounted for by :func:`account_runs`.

    ``cpu``: a function giving the server's CPU seconds; read when submitting starts and when the
    last run submitted has finished (the queue is FIFO), for ``cpu_us`` per accepted run.
    """
    import aiohttp

    submitted: list[tuple[str, int, int]] = []
    latencies: list[float] = []
    rejected: dict[int, int] = {}
    first_rejection: list[str] = []
    connector = aiohttp.TCPConnector(limit=submitters)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + seconds

        async def submitter(k: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                body = {"inputs": {"a": i, "b": k}, "mode": "async"}
                t0 = time.perf_counter()
                async with session.post(url + EXECUTE_PATH, json=body) as resp:
                    data = await resp.read()
                    if resp.status == 202:
                        latencies.append((time.perf_counter() - t0) * 1000)
                        submitted.append((json.loads(data)["workflow_id"], i, k))
                    else:
                        rejected[resp.status] = rejected.get(resp.status, 0) + 1
                        if not first_rejection:
                            first_rejection.append(f"{resp.status} {data[:200]!r}")

        cpu_before = cpu() if cpu else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(submitter(k) for k in range(submitters)))
        window = time.perf_counter() - started
        cpu_us = None
        if cpu and submitted:
            last = submitted[-1][0]
            for _ in range(10):
                async with session.get(f"{url}/executions/{last}?wait=10") as resp:
                    if resp.status != 200 or (await resp.json())["status"] not in (
                        "queued",
                        "running",
                    ):
                        break
            cpu_us = cpu_per_request_us(cpu() - cpu_before, len(submitted))
        records: dict[str, dict[str, Any] | None] = {}
        queue = iter(submitted)

        async def fetcher() -> None:
            for execution_id, _, _ in queue:
                for _ in range(10):  # ?wait= long-polls up to 10 s per try
                    async with session.get(f"{url}/executions/{execution_id}?wait=10") as resp:
                        if resp.status == 404:
                            records[execution_id] = None
                            break
                        record = await resp.json()
                    records[execution_id] = record
                    if record.get("status") not in ("queued", "running"):
                        break

        await asyncio.gather(*(fetcher() for _ in range(submitters)))
    out = account_runs(submitted, records)
    out.update(
        seconds=window,
        submitters=submitters,
        submit_rate=len(submitted) / window if window else 0.0,
        submit_p50_ms=percentile(latencies, 0.50),
        submit_p99_ms=percentile(latencies, 0.99),
        cpu_us=cpu_us,
        rejected=sum(rejected.values()),
        rejected_by_status=rejected,
        first_rejection=first_rejection[0] if first_rejection else "",
    )
    return out


def run_async(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """Async runs end to end: one nexus_aio process, SQLite, c=16 submitters (issue 13)."""
    specs = server_specs(["nexus"], cfg.workdir)
    with running(specs, cfg.workdir) as servers:
        server = servers["nexus"]
        check_sum(server)
        asyncio.run(async_runs(server.url, min(1.0, cfg.async_seconds), MAIN_CONCURRENCY))  # warm
        res = asyncio.run(
            async_runs(server.url, cfg.async_seconds, MAIN_CONCURRENCY, server.cpu_seconds)
        )
        res["label"] = server.spec.label
    log(
        f"async runs: {res['succeeded']:,}/{res['accepted']:,} succeeded"
        f" ({res['rejected']} rejected) in {res['span_s']:.1f} s = {res['runs_per_s']:,.0f} runs/s;"
        f" submit p99 {res['submit_p99_ms']:.2f} ms, queue-to-start p99"
        f" {res['queue_p99_ms']:.1f} ms"
    )
    return res


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` (Debian package) on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_redis(cfg: Config, wrk: Wrk, log: Any) -> dict[str, Any]:
    """Execute ``sum`` at c=16 with state in SQLite (the default) and in Redis (the plugin)."""
    if shutil.which("redis-server") is None:
        note = "skipped: redis-server is not installed (apt-get install redis-server)"
        log(f"redis: {note}")
        return {"note": note}
    out: dict[str, Any] = {"rows": {}}
    with redis_server(cfg.workdir) as url:
        for label, env in (("SQLite", {}), ("Redis", {"NEXUS_REDIS_URL": url})):
            specs = server_specs(["nexus"], cfg.workdir, extra_env=env)
            with running(specs, cfg.workdir) as servers:
                target = servers["nexus"].url + EXECUTE_PATH
                wrk.run(target, 16, cfg.warmup)
                res = median_run([wrk.run(target, 16, cfg.duration) for _ in range(cfg.runs)])
                out["rows"][label] = res
                log(f"state in {label}: {res.rps:,.0f} req/s at c=16")
    return out


CASES = {
    "profile": run_profile,
    "redis": run_redis,
    "async": run_async,
    "execute": run_execute,
    "health": run_health,
    "sse": run_sse,
    "memory": run_memory,
    "workers": run_workers,
}


# -- report ---------------------------------------------------------------------------------------
def _cmd_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_facts(with_kailash: bool, with_fastapi: bool = False) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    import aiohttp

    facts = {
        "date (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs (nproc {_cmd_output(['nproc'])})",
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "wrk": _cmd_output(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else "missing",
        "nexus_aio commit": _cmd_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }
    if with_fastapi:
        facts["FastAPI peer"] = _cmd_output(
            [
                str(FASTAPI_VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(', '.join(p + ' ' + m.version(p) for p in"
                " ('fastapi', 'uvicorn', 'uvloop', 'httptools', 'pydantic', 'orjson')))",
            ]
        )
    if with_kailash:
        facts["kailash-nexus"] = _cmd_output(
            [
                str(KAILASH_VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('kailash-nexus'), "
                "'(kailash', m.version('kailash') + ')')",
            ]
        )
    return facts


def _us(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "n/a"


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _goal(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render(cfg: Config, command: str, facts: dict[str, str], res: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench.py` (`make bench`). Do not edit by hand: rerun it.",
        "",
        f"Command: `{command}`",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in facts.items()],
        "",
        "## Method",
        "",
        "- Same workflow everywhere: `sum(a: int, b: int)` over `POST /workflows/sum/execute`"
        ' with `{"inputs": {"a": ..., "b": ...}}`; every request body is unique, across runs too'
        " (`scripts/wrk_unique_body.lua`), because Kailash Nexus answers repeated identical"
        " bodies from a cache.",
        f"- Load: `wrk -t1 -cN -d{cfg.duration:g}s`, after a {cfg.warmup:g} s warm-up per server."
        f" Servers alternate within every round; c=16 is the median of {cfg.runs} run(s)"
        " (latencies from that median run), c=1 and c=64 one run each. No CPU pinning.",
        "- nexus_aio: `python -m nexus_aio serve --port P` (default settings) with the bundled"
        " examples (`sum` is an `async def`) and every installed first-party plugin (auth off);"
        " SQLite is the default embedded store (a temporary file), `:memory:` is shown for"
        " comparison. `nexus_aio def` serves `scripts/bench_sync_app.py` (`--app`), whose `sum`"
        " is a plain `def` run in the thread pool, with the same settings.",
        "- bare aiohttp (`scripts/bench_bare_aiohttp.py`): the floor; parses with orjson, checks"
        " two ints, returns the same success envelope fields.",
        "- FastAPI (`scripts/bench_fastapi_app.py`, `--with-fastapi`, installed into"
        " `.bench/fastapi-venv`): the hand-written peer; uvicorn with uvloop and httptools, a"
        " pydantic model (strict ints) validates the body, orjson answers the same envelope.",
        "- Access log: nexus_aio's is on (its default: one line per request, to the server's log"
        " file); the peers run without one (aiohttp's is off in the bare one, uvicorn's in FastAPI"
        " and Kailash Nexus), as their fastest hand-written setups would.",
        "- Server CPU us/request: utime + stime of the server process (and its children for"
        " `--workers`) from `/proc/<pid>/stat`, before and after each wrk run, over the requests"
        " of that run; in parentheses the part of it spent in the main (event-loop) thread"
        " (`/proc/<pid>/task/<pid>/stat`), the rest being other threads (nexus_aio's SQLite"
        " writer and thread pool, Kailash's runtime threads).",
        "- RSS is `VmRSS` of the server process from `/proc/<pid>/status` (MB = 2^20 bytes).",
        "- Goals are issue 13's; each is marked **PASS** or **FAIL** in the Goals section.",
        "- Regression guard (`make test` runs `tests/test_bench_guard.py`; the same check is"
        " `scripts/bench.py --guard`): nexus_aio / bare aiohttp req/s at c=16, median of 3"
        f" alternating 1 s rounds, must stay >= {GUARD_THRESHOLD:.2f} (wrk when installed, else"
        " an aiohttp client load generator).",
    ]
    if cfg.quick:
        lines.append("- **Quick mode** (`--quick`): one short run per case; a smoke test only.")
    lines.append("")
    goals: list[str] = []
    if "execute" in res:
        lines += _render_execute(res["execute"], goals)
    if "health" in res:
        lines += _render_health(res["health"])
    if "sse" in res:
        lines += _render_sse(cfg, res["sse"], goals)
    if "memory" in res:
        lines += _render_memory(cfg, res["memory"], goals)
    if "workers" in res:
        lines += _render_workers(res["workers"], goals)
    if "async" in res:
        lines += _render_async(res["async"], goals)
    if "redis" in res:
        lines += _render_redis(res["redis"])
    if "profile" in res:
        lines += _render_profile(res["profile"])
    if goals:
        lines += ["## Goals", ""]
        if cfg.quick:
            lines += [
                "Quick mode: shorter runs, fewer streams, requests and seconds than the goals"
                " name; the marks only show the harness works.",
                "",
            ]
        lines += [*goals, ""]
    return "\n".join(lines)


def _render_execute(ex: dict[str, Any], goals: list[str]) -> list[str]:
    rows, labels = ex["rows"], ex["labels"]
    lines = [
        "## Execute `sum`",
        "",
        "Ratios: req/s and p99 of the row over the same figure of the peer at the same c.",
        "",
        "| server | c | req/s | p50 ms | p99 ms | CPU us/req (main thread) | errors | vs floor |"
        " p99 vs floor | vs FastAPI | vs Kailash Nexus |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def peer(name: str, conc: int) -> WrkResult | None:
        row = rows.get((name, conc))
        return row["median"] if row else None

    for conc in CONCURRENCY:
        bare, fastapi, kailash = (peer(n, conc) for n in ("bare", "fastapi", "kailash"))
        for name, label in labels.items():
            r: WrkResult = rows[(name, conc)]["median"]
            vs_bare = _ratio(r.rps, bare.rps) if bare and name != "bare" else ""
            p99_bare = _ratio(r.p99_ms, bare.p99_ms) if bare and name != "bare" else ""
            vs_f = _ratio(r.rps, fastapi.rps) if fastapi and name != "fastapi" else ""
            vs_k = _ratio(r.rps, kailash.rps) if kailash and name != "kailash" else ""
            lines.append(
                f"| {label} | {conc} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
                f" {_us(r.cpu_us)} ({_us(r.cpu_main_us)}) | {r.errors} | {vs_bare} | {p99_bare} |"
                f" {vs_f} | {vs_k} |"
            )
    lines += ["", "All c=16 runs (req/s):", ""]
    for name, label in labels.items():
        runs = ", ".join(f"{x:,.0f}" for x in rows[(name, MAIN_CONCURRENCY)]["all"])
        lines.append(f"- {label}: {runs}")
    lines += ["", "| server | RSS idle MB | RSS after the execute runs MB |", "|---|---:|---:|"]
    for name, label in labels.items():
        rss = ex["rss"][name]
        lines.append(f"| {label} | {rss['idle']:.1f} | {rss['loaded']:.1f} |")
    lines.append("")
    c16 = {name: rows[(name, MAIN_CONCURRENCY)]["median"] for name in labels}
    bare16, bare64 = peer("bare", MAIN_CONCURRENCY), peer("bare", 64)
    for name in NEXUS_SERVERS:
        if name not in c16:
            continue
        label, r = labels[name], c16[name]
        if bare16:
            ratio, goal = r.rps / bare16.rps, GOALS["floor_ratio"][name]
            goals.append(
                f"- {_goal(ratio >= goal)} {label} req/s at c=16 vs bare aiohttp: {ratio:.2f}"
                f" (goal >= {goal:.2f})"
            )
            p99 = r.p99_ms / bare16.p99_ms
            goals.append(
                f"- {_goal(p99 <= GOALS['p99_c16'])} {label} p99 at c=16: {r.p99_ms:.2f} ms ="
                f" {p99:.2f}x the floor's {bare16.p99_ms:.2f} ms (goal <= {GOALS['p99_c16']:g}x)"
            )
        r64 = peer(name, 64)
        if r64 and bare64:
            p99 = r64.p99_ms / bare64.p99_ms
            goals.append(
                f"- {_goal(p99 <= GOALS['p99_c64'])} {label} p99 at c=64: {r64.p99_ms:.2f} ms ="
                f" {p99:.2f}x the floor's {bare64.p99_ms:.2f} ms (goal <= {GOALS['p99_c64']:g}x)"
            )
        if name != "nexus":
            continue
        for peer_name, peer_label, key in (
            ("fastapi", "FastAPI", "fastapi_ratio"),
            ("kailash", "Kailash Nexus", "kailash_ratio"),
        ):
            other = c16.get(peer_name)
            if other is None:
                goals.append(
                    f"- (not measured) {label} vs {peer_label}: run with --with-{peer_name}"
                )
                continue
            ratio = r.rps / other.rps
            goals.append(
                f"- {_goal(ratio >= GOALS[key])} {label} req/s at c=16 vs {peer_label}:"
                f" {ratio:.2f}x (goal >= {GOALS[key]:g}x)"
            )
    cpu = ", ".join(
        f"{labels[n]} {_us(c16[n].cpu_us)}" for n in labels if c16[n].cpu_us is not None
    )
    if cpu:
        goals.append(f"- (reported) server CPU us/request at c=16: {cpu}")
    return lines


def _render_health(he: dict[str, Any]) -> list[str]:
    lines = ["## `GET /health` (c=16)", "", "| server | req/s | p50 ms | p99 ms | errors |"]
    lines.append("|---|---:|---:|---:|---:|")
    for name, label in he["labels"].items():
        r: WrkResult = he["rows"][name]
        lines.append(f"| {label} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")
    lines += [
        "",
        "The bodies differ: nexus_aio's health reports version, uptime, workflow count and active"
        " sessions (a store query); the bare server and FastAPI answer a constant; Kailash Nexus"
        " reports per-workflow health.",
        "",
    ]
    return lines


def _render_sse(cfg: Config, sse: dict[str, Any], goals: list[str]) -> list[str]:
    n = cfg.sse_streams
    lines = [
        "## Server-sent events",
        "",
        f"Time to first event over {cfg.sse_ttfe_samples} sequential streams (request sent to"
        f" the end of the first `event:` block), then {n:,} streams opened at once and held"
        " (a workflow that waits: `slow` for nexus_aio and Kailash Nexus in stream mode, a"
        " sleeping handler for bare aiohttp).",
        "",
        f"| server | first event p50 ms | p99 ms | RSS before MB | RSS with {n:,} open MB |"
        " growth MB | opened | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in sse["labels"].items():
        r = sse["rows"][name]
        lines.append(
            f"| {label} | {r['ttfe_p50']:.2f} | {r['ttfe_p99']:.2f} | {r['rss_before']:.1f} |"
            f" {r['rss_open']:.1f} | {r['rss_open'] - r['rss_before']:.1f} | {r['opened']} |"
            f" {r['failed']} |"
        )
    lines += [
        "",
        f"nexus_aio runs each stream as a live execution; its default cap of 100 concurrent"
        f" executions was raised (`NEXUS_MAX_CONCURRENT_REQUESTS={n + 100}`) for this case.",
        "",
    ]
    for name in ("nexus", "nexus-sync", "nexus-memory"):
        if name in sse["rows"]:
            r = sse["rows"][name]
            ok = r["rss_open"] < GOALS["sse_mb"] and r["opened"] == n
            mark = _goal(ok) if name in NEXUS_SERVERS else "(reported)"
            goals.append(
                f"- {mark} {sse['labels'][name]} with {r['opened']:,}/{n:,} SSE streams"
                f" open: {r['rss_open']:.1f} MB RSS (goal: all {n:,} open, < {GOALS['sse_mb']:.0f}"
                " MB)"
            )
    return lines


def _render_memory(cfg: Config, mem: dict[str, Any], goals: list[str]) -> list[str]:
    lines = [
        "## Memory: RSS at idle and after many requests (leak check)",
        "",
        "| server | idle MB | after warm-up MB | requests | after MB | growth from idle MB |"
        " growth from warm-up MB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in mem["labels"].items():
        r = mem["rows"][name]
        lines.append(
            f"| {label} | {r['idle']:.1f} | {r['warm']:.1f} | {r['requests']:,} |"
            f" {r['after']:.1f} | {r['after'] - r['idle']:.1f} | {r['after'] - r['warm']:.1f} |"
            f" {r['errors']} |"
        )
    lines += [
        "",
        "The warm-up is one short wrk run (first imports, thread pool, store caches); Kailash"
        " Nexus is left out of this case (100,000 requests take minutes at its rate).",
        "",
    ]
    for name in ("nexus", "nexus-sync", "nexus-memory"):
        if name in mem["rows"]:
            r = mem["rows"][name]
            growth = r["after"] - r["warm"]
            ok = abs(growth) <= GOALS["leak_mb"]
            # The memory store keeps records up to memory_executions_max_bytes by design.
            mark = _goal(ok) if name in NEXUS_SERVERS else "(reported)"
            goals.append(
                f"- {mark} {mem['labels'][name]} RSS over"
                f" {r['requests']:,} requests after the warm-up: {r['warm']:.1f} ->"
                f" {r['after']:.1f} MB = {growth:+.1f} MB (goal: within"
                f" {GOALS['leak_mb']:.0f} MB of the warmed-up figure; idle was {r['idle']:.1f} MB)"
            )
    return lines


def _render_workers(wo: dict[str, Any], goals: list[str]) -> list[str]:
    if "note" in wo:
        return ["## `serve --workers 2`", "", wo["note"], ""]
    lines = [
        "## `serve --workers N` (c=64, SQLite, alternating)",
        "",
        "| workers | req/s | p50 ms | p99 ms | CPU us/req (all processes) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers, r in wo["rows"].items():
        lines.append(
            f"| {workers} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {_us(r.cpu_us)} |"
        )
    one, two = wo["rows"].get(1), wo["rows"].get(2)
    if one and two and one.rps:
        ratio = two.rps / one.rps
        goals.append(
            f"- {_goal(ratio >= GOALS['workers_2'])} `--workers 2` at c=64 vs one process:"
            f" {ratio:.2f}x (goal >= {GOALS['workers_2']:g}x)"
        )
    return [*lines, ""]


def _render_async(ar: dict[str, Any], goals: list[str]) -> list[str]:
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(ar["statuses"].items())) or "none"
    rejected = ", ".join(f"{k}: {v:,}" for k, v in sorted(ar["rejected_by_status"].items()))
    lines = [
        "## Async runs end to end (`mode: async` -> `succeeded`)",
        "",
        f"{ar['label']}, one process, bundled `sum`; {ar['submitters']} aiohttp submitters"
        f' (one asyncio client process) POST `{{"inputs": ..., "mode": "async"}}` for'
        f" {ar['seconds']:.1f} s; then every accepted run is fetched (`GET /executions/{{id}}`)"
        " and must say `succeeded` with the right sum. Runs/s: succeeded runs over the span"
        " from the first `created_at` to the last `finished_at`; queue-to-start delay:"
        " `started_at - created_at` of each record (millisecond timestamps).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| accepted (202) | {ar['accepted']:,} |",
        f"| rejected | {ar['rejected']:,} {f'({rejected})' if rejected else ''} |",
        f"| succeeded with the right result | {ar['succeeded']:,} |",
        f"| record statuses | {statuses} |",
        f"| not found / wrong result | {ar['missing']:,} / {ar['wrong_result']:,} |",
        f"| submit rate (runs/s accepted) | {ar['submit_rate']:,.0f} |",
        f"| span first created -> last finished (s) | {ar['span_s']:.2f} |",
        f"| **runs/s completed** | **{ar['runs_per_s']:,.0f}** |",
        f"| submit latency p50 / p99 ms | {ar['submit_p50_ms']:.2f} / {ar['submit_p99_ms']:.2f} |",
        f"| queue-to-start p50 / p99 ms | {ar['queue_p50_ms']:.1f} / {ar['queue_p99_ms']:.1f} |",
        f"| server CPU us per run | {_us(ar['cpu_us'])} |",
        "",
    ]
    if ar["first_rejection"]:
        lines += [f"First rejection: `{ar['first_rejection']}`", ""]
    ok = ar["runs_per_s"] >= GOALS["async_runs"] and ar["all_accounted"] and not ar["rejected"]
    goals.append(
        f"- {_goal(ok)} async runs: {ar['runs_per_s']:,.0f} runs/s completed over"
        f" {ar['seconds']:.0f} s, {ar['succeeded']:,}/{ar['accepted']:,} accounted for,"
        f" {ar['rejected']:,} rejected (goal >= {GOALS['async_runs']:,.0f} runs/s, every run"
        f" accounted for); submit p99 {ar['submit_p99_ms']:.2f} ms, queue-to-start p99"
        f" {ar['queue_p99_ms']:.1f} ms"
    )
    return lines


def _render_redis(ro: dict[str, Any]) -> list[str]:
    if "note" in ro:
        return ["## State in Redis vs SQLite", "", ro["note"], ""]
    lines = [
        "## State in Redis vs SQLite (execute `sum`, c=16)",
        "",
        "| state | req/s | p50 ms | p99 ms | vs SQLite |",
        "|---|---:|---:|---:|---:|",
    ]
    base = ro["rows"].get("SQLite")
    for label, r in ro["rows"].items():
        ratio = f"{r.rps / base.rps:.2f}x" if base and base.rps else ""
        lines.append(f"| {label} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {ratio} |")
    return [*lines, ""]


def _render_profile(pr: dict[str, Any]) -> list[str]:
    lines = [
        "## Profile (py-spy, execute `sum` at c=16)",
        "",
        "`py-spy record --pid P --format raw -t -r 100` over one wrk run (the sampler slows the"
        " server: the req/s here are lower than above). Thread CPU is from `/proc/<pid>/task`"
        " over the same run, per request. Shares are % of all samples (threads not waiting"
        " count); inclusive: the function anywhere on the stack; self: the innermost frame (time"
        " in C code, e.g. the event loop's `epoll` or SQLite, shows on the Python line calling"
        " it).",
        "",
    ]
    for name, label in pr["labels"].items():
        row = pr["rows"][name]
        r: WrkResult = row["wrk"]
        others = ", ".join(f"{u:,.0f}" for u in row["other_us"][:6]) or "none"
        lines += [
            f"### {label}",
            "",
            f"{r.rps:,.0f} req/s under the profiler; CPU us/request: main thread"
            f" {row['main_us']:,.0f}, other threads (busiest first) {others}.",
            "",
        ]
        if "error" in row:
            lines += [row["error"], ""]
            continue
        lines.append(
            f"Samples: {row['samples']:,}; threads: "
            + ", ".join(f"{t} {pct:.1f}%" for t, pct in row["threads"])
        )
        lines += ["", "| inclusive % | function | | self % | line |", "|---:|---|---|---:|---|"]
        for i in range(max(len(row["inclusive"]), len(row["self"]))):
            inc = row["inclusive"][i] if i < len(row["inclusive"]) else ("", None)
            own = row["self"][i] if i < len(row["self"]) else ("", None)
            lines.append(
                f"| {'' if inc[1] is None else f'{inc[1]:.1f}'} | `{inc[0]}` | |"
                f" {'' if own[1] is None else f'{own[1]:.1f}'} | `{own[0]}` |"
            )
        lines.append("")
    if "calls" in pr:
        lines += _render_calls(pr["calls"])
    return lines


def _render_calls(calls: dict[str, Any]) -> list[str]:
    lines = [
        "### Python calls per request (cProfile)",
        "",
        "`scripts/bench_calls.py` serves each one under cProfile, switched on after the warm-up,"
        " over one c=16 wrk run: every Python-level call (functions, methods, builtins) is"
        " counted exactly, by the layer it belongs to. The server's CPU per request above grows"
        " with this count.",
        "",
        "| server | calls/request | aiohttp | nexus_aio + plugins | handler | Python builtins"
        " + stdlib | other | vs floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floor = sum(calls["bare"]["layers"].values()) if "bare" in calls else 0.0
    for row in calls.values():
        layers = row["layers"]
        total = sum(layers.values())
        ratio = f"{total / floor:.2f}x" if floor and row is not calls.get("bare") else ""
        cells = " | ".join(f"{layers[k]:,.0f}" for k in CALL_LAYERS)
        lines.append(f"| {row['label']} | {total:,.0f} | {cells} | {ratio} |")
    lines.append("")
    return lines


# -- main -----------------------------------------------------------------------------------------
# The release issue 13's goal names; a later one would move the goal's baseline.
KAILASH_REQUIREMENT = "kailash-nexus~=2.16.0"


def ensure_kailash(log: Any) -> None:
    """``pip install kailash-nexus`` (2.16.x) into ``.bench/kailash-venv`` (ignored by git) once."""
    python = KAILASH_VENV / "bin" / "python"
    if python.exists():
        return
    log(f"installing {KAILASH_REQUIREMENT} into {KAILASH_VENV.relative_to(ROOT)} ...")
    KAILASH_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(KAILASH_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", KAILASH_REQUIREMENT], check=True)


def ensure_fastapi(log: Any) -> None:
    """``pip install fastapi uvicorn[standard] orjson`` into ``.bench/fastapi-venv`` once."""
    python = FASTAPI_VENV / "bin" / "python"
    if python.exists():
        return
    log(f"installing {' '.join(FASTAPI_PACKAGES)} into {FASTAPI_VENV.relative_to(ROOT)} ...")
    FASTAPI_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(FASTAPI_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *FASTAPI_PACKAGES], check=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="nexus_aio vs bare aiohttp (vs FastAPI, vs Kailash Nexus)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run of 3 s per case")
    parser.add_argument("--with-fastapi", action="store_true", help="add hand-written FastAPI")
    parser.add_argument("--with-kailash", action="store_true", help="add Kailash Nexus (PyPI)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; quick 3)")
    parser.add_argument("--runs", type=int, help="runs of the c=16 case (default 3; quick 1)")
    parser.add_argument(
        "--cases", default=",".join(DEFAULT_CASES), help=f"comma list of {', '.join(ALL_CASES)}"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add the profile case (py-spy into .bench/tools-venv; needs ptrace rights)",
    )
    parser.add_argument(
        "--servers",
        default="nexus,nexus-sync,nexus-memory,bare",
        help="comma list of nexus, nexus-sync, nexus-memory, bare, fastapi, kailash",
    )
    parser.add_argument("--sse-streams", type=int, help="streams held open (default 1000)")
    parser.add_argument("--leak-requests", type=int, help="memory case (default 100000)")
    parser.add_argument(
        "--async-seconds", type=float, help="async runs case: seconds of submitting (30; quick 3)"
    )
    parser.add_argument(
        "--output", help="report path (default docs/benchmarks.md; a temp file with --quick)"
    )
    guard_group = parser.add_argument_group("regression guard (--guard: no report, exit 1 on FAIL)")
    guard_group.add_argument("--guard", action="store_true", help="run the CI ratio guard only")
    guard_group.add_argument("--guard-rounds", type=int, default=3)
    guard_group.add_argument("--guard-seconds", type=float, default=1.0)
    guard_group.add_argument("--guard-threshold", type=float, default=GUARD_THRESHOLD)
    guard_group.add_argument("--loadgen", choices=["auto", "wrk", "aiohttp"], default="auto")
    return parser


def make_config(args: argparse.Namespace, workdir: Path) -> Config:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if getattr(args, "profile", False) and "profile" not in cases:
        cases.append("profile")
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for flag, name in ((args.with_fastapi, "fastapi"), (args.with_kailash, "kailash")):
        if flag and name not in servers:
            servers.append(name)
    quick = args.quick
    return Config(
        servers=servers,
        cases=cases,
        duration=args.duration or (3.0 if quick else 10.0),
        runs=args.runs or (1 if quick else 3),
        warmup=1.0 if quick else 3.0,
        sse_streams=args.sse_streams or (200 if quick else 1000),
        sse_ttfe_samples=20 if quick else 200,
        leak_requests=args.leak_requests or (20_000 if quick else 100_000),
        async_seconds=args.async_seconds or (3.0 if quick else 30.0),
        quick=quick,
        workdir=workdir,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def log(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    if args.guard:
        with tempfile.TemporaryDirectory(prefix="nexus-bench-guard-") as tmp:
            result = guard(
                Path(tmp),
                rounds=args.guard_rounds,
                seconds=args.guard_seconds,
                threshold=args.guard_threshold,
                loadgen=args.loadgen,
            )
        print(result.summary(), flush=True)
        return 0 if result.passed else 1
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.with_fastapi or "fastapi" in args.servers:
        ensure_fastapi(log)
    if args.with_kailash or "kailash" in args.servers:
        ensure_kailash(log)
    command = shlex.join([".venv/bin/python", "scripts/bench.py", *argv])
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        cfg = make_config(args, Path(tmp))
        wrk = Wrk()
        results: dict[str, Any] = {}
        failed: list[str] = []
        for case in cfg.cases:
            try:
                results[case] = CASES[case](cfg, wrk, log)
            except Exception as exc:  # keep the other cases' numbers; say what failed
                log(f"case {case} failed: {exc!r}")
                failed.append(f"- case `{case}` failed: `{exc!r}`")
    report = render(
        cfg, command, machine_facts("kailash" in cfg.servers, "fastapi" in cfg.servers), results
    )
    if failed:
        report += "\n## Failed cases\n\n" + "\n".join(failed) + "\n"
    if args.output:
        output = Path(args.output)
    elif cfg.quick:  # a smoke run must not overwrite the committed report
        output = Path(tempfile.gettempdir()) / "nexus_aio-benchmarks-quick.md"
    else:
        output = ROOT / "docs" / "benchmarks.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    kept = output.read_text().split(SOAK_MARKER, 1) if output.exists() else [""]
    soak = SOAK_MARKER + kept[1] if len(kept) == 2 else ""  # make soak's section stays
    output.write_text(report + "\n" + ("\n" + soak if soak else ""))
    print(report)
    log(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
