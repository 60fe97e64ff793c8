"""Measurements and thresholds behind the health components; no aiohttp, no app state.

Every measurement is a small function of the process or the file system, so each component
can be tested by feeding it numbers, and each threshold is checked once, at startup.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nexus_aio import Setting
from nexus_aio.errors import ConfigurationError

__all__ = [
    "SETTINGS",
    "HealthConfig",
    "LoopLagMonitor",
    "Threshold",
    "disk_path",
    "disk_usage_status",
    "read_rss_bytes",
]

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Threshold:
    """Two limits on one measurement; ``None`` turns a limit off.

    ``higher_is_worse``: lag, memory, latency cross a limit by going up; free disk space
    crosses it by going down.
    """

    degraded: float | None
    unhealthy: float | None
    higher_is_worse: bool = True

    def __post_init__(self) -> None:
        d, u = self.degraded, self.unhealthy
        if d is not None and u is not None and (d > u if self.higher_is_worse else d < u):
            word = "above" if self.higher_is_worse else "below"
            raise ConfigurationError(
                f"the unhealthy threshold ({u}) must be {word} the degraded one ({d})"
            )

    def _crossed(self, value: float, limit: float | None) -> bool:
        if limit is None:
            return False
        return value >= limit if self.higher_is_worse else value < limit

    def status(self, value: float | None) -> str:
        """``healthy`` / ``degraded`` / ``unhealthy`` for ``value`` (None: not measured yet)."""
        if value is None:
            return HEALTHY
        if self._crossed(value, self.unhealthy):
            return UNHEALTHY
        if self._crossed(value, self.degraded):
            return DEGRADED
        return HEALTHY

    def describe(self) -> dict[str, float | None]:
        return {"degraded": self.degraded, "unhealthy": self.unhealthy}


def worst(*statuses: str) -> str:
    order = (HEALTHY, DEGRADED, UNHEALTHY)
    return max(statuses, key=order.index, default=HEALTHY)


# -- configuration ------------------------------------------------------------------------------
_UNSET: Any = object()

# Each setting's built-in value, used while it is None (not set); 0 turns a limit off.
DEFAULTS: dict[str, tuple[float, str]] = {
    "health_loop_lag_interval": (0.5, "seconds between event-loop lag samples"),
    "health_loop_lag_degraded": (0.1, "event-loop lag (s) from which the loop is degraded"),
    "health_loop_lag_unhealthy": (1.0, "event-loop lag (s) from which the loop is unhealthy"),
    "health_memory_degraded_mb": (1024, "RSS (MB) from which memory is degraded"),
    "health_memory_unhealthy_mb": (4096, "RSS (MB) from which memory is unhealthy"),
    "health_disk_degraded_free_mb": (1024, "free disk (MB) below which disk is degraded"),
    "health_disk_unhealthy_free_mb": (100, "free disk (MB) below which disk is unhealthy"),
    "health_disk_degraded_free_percent": (10, "free disk (%) below which disk is degraded"),
    "health_disk_unhealthy_free_percent": (2, "free disk (%) below which disk is unhealthy"),
    "health_store_latency_degraded_ms": (250, "store ping (ms) from which stores are degraded"),
    "health_store_latency_unhealthy_ms": (1000, "store ping (ms) from which they are unhealthy"),
}
SETTINGS = tuple(
    Setting(name, float | None, None, feature="health", help=f"{text} (default {value:g})")
    for name, (value, text) in DEFAULTS.items()
)


def _number(settings: Any, name: str) -> float | None:
    """The setting as a non-negative number; ``0`` means off (None); ``_UNSET`` when not set."""
    value = getattr(settings, name)
    if value is None:
        return _UNSET
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative, got {value!r}")
    return float(value) or None


def _pair(settings: Any, degraded_name: str, unhealthy_name: str, up: bool) -> Threshold:
    """A threshold from two settings; a default that contradicts a value set yields to it.

    ``health_memory_unhealthy_mb=1`` alone then means "unhealthy from 1 MB" (the degraded
    default, 1024, moves down to 1) instead of a startup error; two values set by hand that
    contradict each other still fail startup.
    """
    names = (degraded_name, unhealthy_name)
    defaults = (DEFAULTS[degraded_name][0], DEFAULTS[unhealthy_name][0])
    degraded, unhealthy = _number(settings, degraded_name), _number(settings, unhealthy_name)
    if degraded is _UNSET and unhealthy is _UNSET:
        degraded, unhealthy = defaults
    elif degraded is _UNSET:
        degraded = defaults[0] if unhealthy is None else _no_worse(defaults[0], unhealthy, up)
    elif unhealthy is _UNSET:
        unhealthy = defaults[1] if degraded is None else _no_better(defaults[1], degraded, up)
    try:
        return Threshold(degraded, unhealthy, up)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{names[0]} / {names[1]}: {exc}") from None


def _no_worse(default: float, unhealthy: float, up: bool) -> float:
    return min(default, unhealthy) if up else max(default, unhealthy)


def _no_better(default: float, degraded: float, up: bool) -> float:
    return max(default, degraded) if up else min(default, degraded)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Every health setting, read and checked once when the app is built.

    Settings (:data:`SETTINGS`: constructor keyword, ``app.api.<name>`` or ``NEXUS_<NAME>``; unset
    (None) means the default below, ``0`` turns a limit off):
    ``health_loop_lag_interval`` (0.5 s), ``health_loop_lag_degraded`` / ``_unhealthy``
    (0.1 / 1.0 s), ``health_memory_degraded_mb`` / ``_unhealthy_mb`` (1024 / 4096 MB RSS),
    ``health_disk_degraded_free_mb`` / ``_unhealthy_free_mb`` (1024 / 100 MB free),
    ``health_disk_degraded_free_percent`` / ``_unhealthy_free_percent`` (10 / 2 %),
    ``health_store_latency_degraded_ms`` / ``_unhealthy_ms`` (250 / 1000 ms).
    """

    lag_interval: float
    lag: Threshold
    memory_mb: Threshold
    disk_free_mb: Threshold
    disk_free_percent: Threshold
    store_latency_ms: Threshold
    database: str

    @classmethod
    def from_settings(cls, settings: Any) -> HealthConfig:
        interval = _number(settings, "health_loop_lag_interval")
        if interval is _UNSET:
            interval = DEFAULTS["health_loop_lag_interval"][0]
        if interval is None:
            raise ConfigurationError("health_loop_lag_interval must be positive")
        return cls(
            lag_interval=interval,
            lag=_pair(settings, "health_loop_lag_degraded", "health_loop_lag_unhealthy", True),
            memory_mb=_pair(
                settings, "health_memory_degraded_mb", "health_memory_unhealthy_mb", True
            ),
            disk_free_mb=_pair(
                settings, "health_disk_degraded_free_mb", "health_disk_unhealthy_free_mb", False
            ),
            disk_free_percent=_pair(
                settings,
                "health_disk_degraded_free_percent",
                "health_disk_unhealthy_free_percent",
                False,
            ),
            store_latency_ms=_pair(
                settings,
                "health_store_latency_degraded_ms",
                "health_store_latency_unhealthy_ms",
                True,
            ),
            database=str(settings.database),
        )


# -- event-loop lag -----------------------------------------------------------------------------
class LoopLagMonitor:
    """How late the event loop wakes a sleeper: the delay every request also suffers.

    A background task sleeps ``interval`` seconds and records how much longer than that it
    took; the component reports the worst of the last ``window`` samples, so one busy moment
    is visible for a few seconds instead of only until the next sample. ``clock`` and
    ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        interval: float = 0.5,
        window: int = 10,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def record(self, lag: float) -> None:
        self.samples.append(lag)

    @property
    def last(self) -> float | None:
        return self.samples[-1] if self.samples else None

    @property
    def peak(self) -> float | None:
        return max(self.samples) if self.samples else None

    async def sample(self) -> float:
        """Sleep one interval and record the overshoot (never negative)."""
        started = self._clock()
        await self._sleep(self.interval)
        lag = max(0.0, self._clock() - started - self.interval)
        self.record(lag)
        return lag

    async def _run(self) -> None:
        while True:
            await self.sample()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nexus-health-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# -- memory -------------------------------------------------------------------------------------
def read_rss_bytes(status_path: str = "/proc/self/status") -> tuple[int, str]:
    """The process's resident memory and where it came from.

    ``/proc/self/status`` (Linux) gives the current RSS; elsewhere ``getrusage`` gives only the
    peak, which is still an upper bound worth alerting on.
    """
    try:
        with open(status_path, "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024, "VmRSS"
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss"


# -- disk ---------------------------------------------------------------------------------------
def disk_path(database: str) -> str | None:
    """The nearest existing directory of the SQLite file, or None for an in-memory database."""
    target = database
    if target.startswith("file:"):
        target = target[5:].split("?", 1)[0]
    if not target or target == ":memory:" or "mode=memory" in database:
        return None
    directory = os.path.dirname(os.path.abspath(target))
    while not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def disk_usage_status(
    usage: Any, free_mb: Threshold, free_percent: Threshold
) -> tuple[str, dict[str, Any]]:
    """The status and report for a ``shutil.disk_usage`` result."""
    free = usage.free / MB
    percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    status = worst(free_mb.status(free), free_percent.status(percent))
    return status, {
        "free_mb": round(free, 1),
        "total_mb": round(usage.total / MB, 1),
        "free_percent": round(percent, 2),
        "thresholds": {"free_mb": free_mb.describe(), "free_percent": free_percent.describe()},
    }


def disk_report(path: str, config: HealthConfig) -> dict[str, Any]:
    status, report = disk_usage_status(
        shutil.disk_usage(path), config.disk_free_mb, config.disk_free_percent
    )
    return {"status": status, "path": path, **report}


def store_report(
    results: Mapping[str, tuple[float | None, str | None]], threshold: Threshold
) -> dict[str, Any]:
    """The ``stores`` component from each store's (latency ms or None, error or None)."""
    stores: dict[str, Any] = {}
    statuses = []
    for name, (latency, error) in results.items():
        status = UNHEALTHY if error is not None else threshold.status(latency)
        statuses.append(status)
        entry: dict[str, Any] = {"status": status, "reachable": error is None}
        if latency is not None:
            entry["latency_ms"] = round(latency, 3)
        if error is not None:
            entry["error"] = error
        stores[name] = entry
    return {
        "status": worst(*statuses),
        "stores": stores,
        "thresholds": {"latency_ms": threshold.describe()},
    }
