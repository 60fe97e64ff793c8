"""Health checks called directly: thresholds, the lag monitor (injected clock), RSS, disk."""

from __future__ import annotations

import asyncio
import os
import time
from collections import namedtuple
from typing import Any

import nexus_aio_health
import pytest
from nexus_aio_health.checks import (
    MB,
    SETTINGS,
    HealthConfig,
    LoopLagMonitor,
    Threshold,
    disk_path,
    disk_usage_status,
    read_rss_bytes,
    store_report,
)

from nexus_aio.errors import ConfigurationError
from nexus_aio.settings import Settings
from nexus_aio.testing import make_app

Usage = namedtuple("Usage", "total used free")


def settings(**kw: Any) -> Settings:
    return Settings.build(kw, environ={}, declared=SETTINGS)


def test_threshold_classifies_values_going_up():
    t = Threshold(0.1, 1.0)
    assert [t.status(v) for v in (None, 0.0, 0.1, 0.5, 1.0, 3.0)] == [
        "healthy",
        "healthy",
        "degraded",
        "degraded",
        "unhealthy",
        "unhealthy",
    ]


def test_threshold_classifies_free_space_going_down():
    t = Threshold(10, 2, higher_is_worse=False)
    assert [t.status(v) for v in (50, 10, 9.9, 2, 1.9)] == [
        "healthy",
        "healthy",
        "degraded",
        "degraded",
        "unhealthy",
    ]


def test_a_threshold_turned_off_never_fires():
    assert Threshold(None, None).status(10**9) == "healthy"
    assert Threshold(1, None).status(10**9) == "degraded"


def test_config_defaults_match_the_documented_values():
    config = HealthConfig.from_settings(settings())
    assert config.lag_interval == 0.5
    assert (config.lag.degraded, config.lag.unhealthy) == (0.1, 1.0)
    assert (config.memory_mb.degraded, config.memory_mb.unhealthy) == (1024, 4096)
    assert (config.disk_free_percent.degraded, config.disk_free_percent.unhealthy) == (10, 2)


def test_config_reads_environment_variables():
    env = {"NEXUS_HEALTH_LOOP_LAG_DEGRADED": "0.25", "NEXUS_HEALTH_MEMORY_UNHEALTHY_MB": "0"}
    config = HealthConfig.from_settings(Settings.build({}, environ=env, declared=SETTINGS))
    assert config.lag.degraded == 0.25
    assert config.memory_mb.unhealthy is None  # 0 turns the limit off


def test_a_default_yields_to_a_contradicting_value_set_alone():
    config = HealthConfig.from_settings(settings(health_memory_unhealthy_mb=1))
    assert (config.memory_mb.degraded, config.memory_mb.unhealthy) == (1, 1)


def test_contradicting_values_set_by_hand_fail_at_startup():
    with pytest.raises(ConfigurationError, match="health_loop_lag_degraded"):
        HealthConfig.from_settings(
            settings(health_loop_lag_degraded=2, health_loop_lag_unhealthy=1)
        )
    with pytest.raises(ConfigurationError, match="must be a number"):
        HealthConfig.from_settings(settings(health_memory_degraded_mb="lots"))


async def test_lag_monitor_records_the_overshoot_with_an_injected_clock():
    times = iter([10.0, 10.8, 20.0, 20.5])
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monitor = LoopLagMonitor(0.5, window=3, clock=lambda: next(times), sleep=fake_sleep)
    assert await monitor.sample() == pytest.approx(0.3)
    assert await monitor.sample() == 0.0
    assert slept == [0.5, 0.5]
    assert (monitor.last, monitor.peak) == (0.0, pytest.approx(0.3))


async def test_lag_monitor_keeps_only_a_window_of_samples():
    monitor = LoopLagMonitor(0.5, window=2)
    for lag in (5.0, 0.1, 0.2):
        monitor.record(lag)
    assert monitor.peak == 0.2


async def test_lag_monitor_measures_a_blocked_loop():
    monitor = LoopLagMonitor(0.001)
    task = asyncio.create_task(monitor.sample())
    await asyncio.sleep(0)  # the sample has started sleeping
    time.sleep(0.15)  # noqa: ASYNC251 - blocking the loop on purpose, as CPU-bound code would
    assert await task >= 0.1


async def test_lag_monitor_start_and_stop_run_a_background_task():
    three = asyncio.Event()
    calls = 0

    async def counting_sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            three.set()
        await asyncio.sleep(0)

    monitor = LoopLagMonitor(0, sleep=counting_sleep)
    monitor.start()
    await three.wait()
    await monitor.stop()
    assert len(monitor.samples) >= 2
    count = len(monitor.samples)
    await asyncio.sleep(0)
    assert len(monitor.samples) == count


def test_read_rss_bytes_parses_proc_status(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 999 kB\nVmRSS:\t   2048 kB\n")
    assert read_rss_bytes(str(status)) == (2048 * 1024, "VmRSS")


def test_read_rss_bytes_falls_back_to_getrusage(tmp_path):
    rss, source = read_rss_bytes(str(tmp_path / "missing"))
    assert source == "ru_maxrss" and rss > MB


def test_disk_path_is_the_nearest_existing_directory(tmp_path):
    assert disk_path(":memory:") is None
    assert disk_path("file::memory:?cache=shared") is None
    assert disk_path(str(tmp_path / "a" / "b" / "x.db")) == str(tmp_path)
    assert disk_path(f"file:{tmp_path}/x.db?mode=rwc") == str(tmp_path)
    assert disk_path("rel.db") == os.getcwd()


def test_disk_usage_status_takes_the_worse_of_megabytes_and_percent():
    mb, pct = Threshold(1024, 100, False), Threshold(10, 2, False)
    assert disk_usage_status(Usage(100_000 * MB, 0, 50_000 * MB), mb, pct)[0] == "healthy"
    assert disk_usage_status(Usage(100_000 * MB, 0, 5_000 * MB), mb, pct)[0] == "degraded"
    status, report = disk_usage_status(Usage(1_000 * MB, 0, 50 * MB), mb, pct)
    assert status == "unhealthy"
    assert (report["free_mb"], report["free_percent"]) == (50.0, 5.0)


def test_store_report_is_unhealthy_when_a_store_is_unreachable_or_slow():
    t = Threshold(250, 1000)
    ok = store_report({"a": (1.0, None), "b": (2.0, None)}, t)
    assert ok["status"] == "healthy"
    slow = store_report({"a": (300.0, None), "b": (2.0, None)}, t)
    assert (slow["status"], slow["stores"]["a"]["status"]) == ("degraded", "degraded")
    down = store_report({"a": (None, "refused"), "b": (2.0, None)}, t)
    assert down["stores"]["a"] == {"status": "unhealthy", "reachable": False, "error": "refused"}
    assert down["status"] == "unhealthy"


async def test_health_components_hook_returns_the_four_named_checks():
    app = make_app(health_memory_degraded_mb=1, health_memory_unhealthy_mb=0)
    components = dict(nexus_aio_health.health_components(nexus=app))
    assert list(components) == ["event_loop", "memory", "disk", "stores"]
    memory = await components["memory"]()
    assert memory["status"] == "degraded" and memory["source"] == "VmRSS"
    loop = await components["event_loop"]()  # the app is not running: no samples yet
    assert (loop["status"], loop["samples"]) == ("healthy", 0)
    stores = await components["stores"]()
    assert stores == {"status": "unhealthy", "error": "the stores are not open"}


def test_health_components_hook_fails_startup_on_bad_thresholds():
    app = make_app(health_disk_degraded_free_percent=1, health_disk_unhealthy_free_percent=5)
    with pytest.raises(ConfigurationError, match="health_disk_degraded_free_percent"):
        nexus_aio_health.health_components(nexus=app)


def test_register_routes_and_cleanup_ctx_hooks():
    app = make_app()
    routes = nexus_aio_health.register_routes(nexus=app)
    assert [(r.method, r.path) for r in routes] == [
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
    ]
    assert len(nexus_aio_health.register_cleanup_ctx(nexus=app)) == 1
