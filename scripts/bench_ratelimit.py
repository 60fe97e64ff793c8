"""Benchmark: 1,000,000 distinct clients through ``MemoryRateLimiter.hit_nowait``.

Two scenarios, each on a simulated clock so the result does not depend on machine speed:

* ``steady``: one request per client, arriving at ``--rate`` requests per second. A key stays busy
  for one emission interval (12 s at 5/min), then the sweep forgets it: tracked keys stay near
  ``2 * rate * 12``, however many clients pass.
* ``flood``: the clock never advances (every key stays busy), so only the ``max_keys`` cap bounds
  memory; it evicts the 10% closest to full each time the cap is hit.

Prints µs per hit, peak tracked keys and the process's peak RSS after each scenario.

    .venv/bin/python scripts/bench_ratelimit.py [--clients 1000000] [--rate 10000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from nexus_aio.stores.ratelimit import MemoryRateLimiter


class SimClock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(name: str, clients: int, step: float, max_keys: int, limit: int) -> None:
    clock = SimClock()
    limiter = MemoryRateLimiter(clock=clock, max_keys=max_keys)
    hit = limiter.hit_nowait
    keys = [f"global|ip:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{i}" for i in range(clients)]
    rss_before = peak_rss_mb()  # the key strings alone, built before the timed loop
    peak = 0
    started = time.perf_counter()
    for i, key in enumerate(keys):
        clock.t += step
        hit(key, limit)
        if not i & 1023:
            peak = max(peak, len(limiter))
    elapsed = time.perf_counter() - started
    peak = max(peak, len(limiter))
    print(
        f"{name:>6}: {clients:,} clients in {elapsed:.2f} s ({elapsed / clients * 1e6:.2f} µs/hit);"
        f" peak tracked keys {peak:,}, at end {len(limiter):,};"
        f" peak RSS {peak_rss_mb():.0f} MB ({rss_before:.0f} MB before the loop)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000.0, help="simulated requests/s")
    parser.add_argument("--limit", type=int, default=5, help="requests per minute per client")
    parser.add_argument("--max-keys", type=int, default=100_000, help="cap for the flood run")
    args = parser.parse_args()
    run("steady", args.clients, 1.0 / args.rate, 1_000_000, args.limit)
    run("flood", args.clients, 0.0, args.max_keys, args.limit)


if __name__ == "__main__":
    main()
