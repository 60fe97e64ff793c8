"""Serve one of the bench's servers under cProfile, for ``scripts/bench.py --profile``: how many
Python-level calls a request costs in each layer (the floor's and nexus_aio's), counted exactly.

Usage: ``python scripts/bench_calls.py OUT -m MODULE ARGS...`` or ``... OUT SCRIPT ARGS...``.
Profiling starts on SIGUSR2 (after the warm-up, so startup is not counted); SIGUSR1 writes the
``pstats`` file ``OUT`` and ends the process at once.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys


def main() -> None:
    out, target, *rest = sys.argv[1:]
    profiler = cProfile.Profile()

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def finish(signum: int, frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(out)
        os._exit(0)

    signal.signal(signal.SIGUSR2, start)
    signal.signal(signal.SIGUSR1, finish)
    if target == "-m":
        module, *args = rest
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *rest]
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
