"""Benchmark regression guard (issue 13): nexus_aio must keep a sane share of the floor's req/s.

Real processes over real sockets: ``python -m nexus_aio serve`` (bundled ``async def sum``, the
SQLite store, every installed plugin) and the bare aiohttp floor, loaded in 3 alternating rounds
of 1 s at c=16 by wrk when installed (the CI installs it), else by an aiohttp client
(``scripts/bench.py``'s ``_aiohttp_load``). The figure is the median of the rounds' ratios, so
load from elsewhere on the machine hits both servers alike; the threshold (0.15) sits far below
the goal (0.70) and today's figure (~0.35-0.45 with wrk), so only a large regression fails.
The same check runs as ``python scripts/bench.py --guard``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_guard_script", SCRIPTS / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_nexus_aio_keeps_a_sane_share_of_the_floor_throughput(tmp_path: Path) -> None:
    bench = load_bench()
    result = bench.guard(tmp_path, rounds=3, seconds=1.0)
    assert all(rps > 0 for rps in result.nexus_rps + result.floor_rps), result.summary()
    assert result.passed, result.summary()
