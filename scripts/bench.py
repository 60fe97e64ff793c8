"""``make bench``: nexus_aio side by side with a bare aiohttp floor (and Kailash Nexus), one run.

Servers (each its own process, not pinned: the machine has few cores and wrk needs one too):

- ``nexus``: ``python -m nexus_aio serve`` with the bundled examples and ``make install``'s plugins,
  the embedded SQLite store (the default) in a temporary file;
- ``nexus-memory``: the same with ``NEXUS_DATABASE=:memory:``;
- ``bare``: ``scripts/bench_bare_aiohttp.py``, the floor (same route, same envelope fields);
- ``kailash`` (``--with-kailash``): Kailash Nexus from PyPI in ``.bench/kailash-venv``
  (``scripts/bench_kailash_app.py``).

Load comes from ``wrk -t1`` with ``scripts/wrk_unique_body.lua``: every request body is unique,
across runs too (Kailash Nexus answers repeated identical bodies from a cache). Runs alternate
between servers (nexus, bare, nexus, bare...) and the main case (execute, c=16) takes the median of
``--runs`` runs. Access logging is off everywhere: aiohttp's in the bare server, uvicorn's in
Kailash's, and nexus_aio's own INFO access line is silenced by ``--log-level warning``.

Cases: ``execute`` (c=1/16/64), ``health``, ``sse`` (time to first event; N streams held open:
server RSS), ``memory`` (RSS at idle and after 100,000 requests), ``workers`` (``serve --workers 2``
when it exists). The result is a markdown report, ``docs/benchmarks.md`` by default.
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
import shlex
import shutil
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
EXECUTE_PATH = "/workflows/sum/execute"
ALL_CASES = ("execute", "health", "sse", "memory", "workers", "redis")
CONCURRENCY = (1, 16, 64)
MAIN_CONCURRENCY = 16
GOALS = {"floor_ratio": 0.70, "kailash_ratio": 40.0, "leak_mb": 10.0, "sse_mb": 150.0}


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
            argv = [py, "-m", "nexus_aio", "serve", "--port", str(port), "--log-level", "warning"]
            label = "nexus_aio (SQLite)" if name == "nexus" else "nexus_aio (:memory:)"
            spec = ServerSpec(name, label, argv, env)
        elif name == "bare":
            argv = [py, str(SCRIPTS / "bench_bare_aiohttp.py"), "--port", str(port)]
            spec = ServerSpec(name, "bare aiohttp", argv, env)
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


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


# -- wrk ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx/3xx answers

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

    def run(self, url: str, connections: int, seconds: float, get: bool = False) -> WrkResult:
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
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return parse_wrk(out)


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
                    res = wrk.run(server.url + EXECUTE_PATH, conc, cfg.duration)
                    per[name].append(res)
                    log(
                        f"execute c={conc} run {i + 1}/{runs} {server.spec.label}: "
                        f"{res.rps:,.0f} req/s p50 {res.p50_ms:.2f} ms p99 {res.p99_ms:.2f} ms"
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
            res = wrk.run(server.url + "/health", MAIN_CONCURRENCY, cfg.duration, get=True)
            out["rows"][name] = res
            log(f"health c=16 {server.spec.label}: {res.rps:,.0f} req/s")
        out["labels"] = {name: s.spec.label for name, s in servers.items()}
    return out


def sse_request(name: str, seconds: float) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of a stream that starts at once and then waits ``seconds``."""
    if name == "bare":
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
        await asyncio.sleep(0.5)  # let the server notice the closed streams
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
    if not (ROOT / "nexus_aio" / "workers.py").exists():
        note = "skipped: `serve --workers N` does not exist yet (no nexus_aio/workers.py)"
        log(f"workers: {note}")
        return {"note": note}
    out: dict[str, Any] = {"rows": {}}
    for workers in (1, 2):
        specs = server_specs(["nexus"], cfg.workdir)
        spec = specs["nexus"]
        spec.argv += ["--workers", str(workers)]
        with running(specs, cfg.workdir) as servers:
            url = servers["nexus"].url + EXECUTE_PATH
            wrk.run(url, 16, cfg.warmup)
            res = median_run([wrk.run(url, 64, cfg.duration) for _ in range(cfg.runs)])
            out["rows"][workers] = res
            log(f"workers={workers}: {res.rps:,.0f} req/s at c=64")
    return out


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
    "redis": run_redis,
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


def machine_facts(with_kailash: bool) -> dict[str, str]:
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


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _goal(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


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
        "- nexus_aio: `python -m nexus_aio serve --port P --log-level warning` with the bundled"
        " examples and every installed first-party plugin (auth off); SQLite is the default"
        " embedded store (a temporary file), `:memory:` is shown for comparison.",
        "- bare aiohttp (`scripts/bench_bare_aiohttp.py`): the floor; parses with orjson, checks"
        " two ints, returns the same success envelope fields.",
        "- Access logging is off in all servers (aiohttp's in the bare one, uvicorn's in Kailash"
        " Nexus; nexus_aio's INFO access line is silenced by `--log-level warning`).",
        "- RSS is `VmRSS` of the server process from `/proc/<pid>/status` (MB = 2^20 bytes).",
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
        lines += _render_workers(res["workers"])
    if "redis" in res:
        lines += _render_redis(res["redis"])
    if goals:
        lines += ["## Goals", "", *goals, ""]
    return "\n".join(lines)


def _render_execute(ex: dict[str, Any], goals: list[str]) -> list[str]:
    rows, labels = ex["rows"], ex["labels"]
    lines = [
        "## Execute `sum`",
        "",
        "| server | c | req/s | p50 ms | p99 ms | errors | vs bare aiohttp | vs Kailash Nexus |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conc in CONCURRENCY:
        bare = rows.get(("bare", conc))
        kailash = rows.get(("kailash", conc))
        for name, label in labels.items():
            r: WrkResult = rows[(name, conc)]["median"]
            vs_bare = _ratio(r.rps, bare["median"].rps) if bare and name != "bare" else ""
            vs_k = _ratio(r.rps, kailash["median"].rps) if kailash and name != "kailash" else ""
            lines.append(
                f"| {label} | {conc} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
                f" {r.errors} | {vs_bare} | {vs_k} |"
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
    c16 = {name: rows[(name, MAIN_CONCURRENCY)]["median"].rps for name in labels}
    for name in ("nexus", "nexus-memory"):
        if name not in c16:
            continue
        if "bare" in c16:
            ratio = c16[name] / c16["bare"]
            goals.append(
                f"- {labels[name]} at c=16 vs bare aiohttp: {ratio:.2f}"
                f" (goal >= {GOALS['floor_ratio']:.2f}): {_goal(ratio >= GOALS['floor_ratio'])}"
            )
        if "kailash" in c16:
            ratio = c16[name] / c16["kailash"]
            goals.append(
                f"- {labels[name]} at c=16 vs Kailash Nexus: {ratio:.1f}x"
                f" (goal >= {GOALS['kailash_ratio']:.0f}x):"
                f" {_goal(ratio >= GOALS['kailash_ratio'])}"
            )
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
        " sessions (a store query); the bare server answers a constant; Kailash Nexus reports"
        " per-workflow health.",
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
    for name in ("nexus", "nexus-memory"):
        if name in sse["rows"]:
            r = sse["rows"][name]
            ok = r["rss_open"] < GOALS["sse_mb"] and r["opened"] == n
            goals.append(
                f"- {sse['labels'][name]} with {r['opened']:,}/{n:,} SSE streams open:"
                f" {r['rss_open']:.1f} MB RSS (goal < {GOALS['sse_mb']:.0f} MB): {_goal(ok)}"
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
    for name in ("nexus", "nexus-memory"):
        if name in mem["rows"]:
            r = mem["rows"][name]
            growth = r["after"] - r["idle"]
            goals.append(
                f"- {mem['labels'][name]} RSS growth over {r['requests']:,} requests: idle"
                f" {r['idle']:.1f} -> {r['after']:.1f} MB = {growth:+.1f} MB"
                f" ({r['after'] - r['warm']:+.1f} MB after warm-up) (goal < {GOALS['leak_mb']:.0f}"
                f" MB): {_goal(growth < GOALS['leak_mb'])}"
            )
    return lines


def _render_workers(wo: dict[str, Any]) -> list[str]:
    if "note" in wo:
        return ["## `serve --workers 2`", "", wo["note"], ""]
    lines = ["## `serve --workers N` (c=64)", "", "| workers | req/s | p50 ms | p99 ms |"]
    lines.append("|---:|---:|---:|---:|")
    for workers, r in wo["rows"].items():
        lines.append(f"| {workers} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |")
    return [*lines, ""]


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


# -- main -----------------------------------------------------------------------------------------
def ensure_kailash(log: Any) -> None:
    """``pip install kailash-nexus`` into ``.bench/kailash-venv`` (ignored by git) once."""
    python = KAILASH_VENV / "bin" / "python"
    if python.exists():
        return
    log(f"installing kailash-nexus into {KAILASH_VENV.relative_to(ROOT)} ...")
    KAILASH_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(KAILASH_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "kailash-nexus"], check=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="nexus_aio vs bare aiohttp (vs Kailash Nexus)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run of 3 s per case")
    parser.add_argument("--with-kailash", action="store_true", help="add Kailash Nexus (PyPI)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; quick 3)")
    parser.add_argument("--runs", type=int, help="runs of the c=16 case (default 3; quick 1)")
    parser.add_argument(
        "--cases", default=",".join(ALL_CASES), help=f"comma list of {', '.join(ALL_CASES)}"
    )
    parser.add_argument(
        "--servers", default="nexus,nexus-memory,bare", help="comma list (kailash: --with-kailash)"
    )
    parser.add_argument("--sse-streams", type=int, help="streams held open (default 1000)")
    parser.add_argument("--leak-requests", type=int, help="memory case (default 100000)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    return parser


def make_config(args: argparse.Namespace, workdir: Path) -> Config:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if args.with_kailash and "kailash" not in servers:
        servers.append("kailash")
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
        quick=quick,
        workdir=workdir,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    if args.with_kailash:
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
    report = render(cfg, command, machine_facts("kailash" in cfg.servers), results)
    if failed:
        report += "\n## Failed cases\n\n" + "\n".join(failed) + "\n"
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report + "\n")
    print(report)
    log(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
