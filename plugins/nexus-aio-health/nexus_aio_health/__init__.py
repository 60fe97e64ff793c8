"""nexus-aio-health: liveness/readiness probes and health components with thresholds.

- ``GET /health/live``: the process answers HTTP (``{"status": "alive"}``); nothing else is
  checked, so an orchestrator restarts the process only when it is really stuck.
- ``GET /health/ready``: every health component (the core's and these); 503 with the same body
  when the overall status is ``unhealthy``, while the stores are not open yet, or once the app
  has started shutting down (so a load balancer stops sending traffic during the drain).
  With auth on, a caller without credentials sees each component's status only (as on
  ``/health/detailed``): no paths, sizes or memory figures.
- Components for ``/health/detailed``: ``event_loop`` (lag measured by a background task),
  ``memory`` (RSS), ``disk`` (free space where the SQLite database lives) and ``stores``
  (each store's ``ping()`` with its latency). Thresholds: :class:`~.checks.HealthConfig`, from the
  ``health_*`` settings this plugin declares (:data:`~.checks.SETTINGS`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nexus_aio import Setting, hookimpl
from nexus_aio import __version__ as nexus_version
from nexus_aio.web.keys import NEXUS, nexus_of
from nexus_aio.web.responses import json_response
from nexus_aio.web.routes import overall_status, run_health_components, visible_components

from .checks import (
    MB,
    SETTINGS,
    HealthConfig,
    LoopLagMonitor,
    Threshold,
    disk_path,
    disk_report,
    read_rss_bytes,
    store_report,
)

if TYPE_CHECKING:
    from nexus_aio import Nexus

__version__ = "0.1.0"
__all__ = [
    "HEALTH_STATE",
    "SETTINGS",
    "HealthConfig",
    "HealthState",
    "LoopLagMonitor",
    "health_components",
    "live",
    "ready",
    "register_cleanup_ctx",
    "register_routes",
    "register_settings",
]

Check = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class HealthState:
    """Per-app state the probes read: the lag monitor and whether shutdown has begun."""

    config: HealthConfig
    monitor: LoopLagMonitor
    shutting_down: bool = False
    started_at: float = field(default_factory=time.time)


HEALTH_STATE: web.AppKey[HealthState] = web.AppKey("nexus_aio_health.state", HealthState)


def _state(nexus: Nexus) -> HealthState | None:
    app = nexus.app
    return app.get(HEALTH_STATE) if app is not None else None


# -- routes -------------------------------------------------------------------------------------
async def live(request: web.Request) -> web.Response:
    """Liveness: answering at all is the check."""
    return json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 unless unhealthy, not started, or shutting down (then 503, same body)."""
    nexus = nexus_of(request)
    state = request.app.get(HEALTH_STATE)
    body: dict[str, Any] = {"version": nexus_version}
    if nexus.service is None:
        body.update(status="unhealthy", ready=False, reason="starting: the stores are not open")
        return json_response(body, status=503)
    components = await run_health_components(nexus)
    status = overall_status(components)
    shutting_down = state is not None and state.shutting_down
    is_ready = status != "unhealthy" and not shutting_down
    body.update(status=status, ready=is_ready, components=visible_components(request, components))
    if shutting_down:
        body["reason"] = "shutting down"
    elif not is_ready:
        body["reason"] = "unhealthy: " + ", ".join(
            sorted(n for n, c in components.items() if c["status"] == "unhealthy")
        )
    return json_response(body, status=200 if is_ready else 503)


# -- components ---------------------------------------------------------------------------------
def event_loop_check(nexus: Nexus, config: HealthConfig) -> Check:
    async def event_loop() -> dict[str, Any]:
        state = _state(nexus)
        monitor = state.monitor if state is not None else None
        peak = monitor.peak if monitor is not None else None
        return {
            "status": config.lag.status(peak),
            "lag_seconds": None if monitor is None else _round(monitor.last),
            "max_lag_seconds": _round(peak),
            "samples": 0 if monitor is None else len(monitor.samples),
            "interval_seconds": config.lag_interval,
            "thresholds": config.lag.describe(),
        }

    return event_loop


def memory_check(
    config: HealthConfig, read: Callable[[], tuple[int, str]] = read_rss_bytes
) -> Check:
    async def memory() -> dict[str, Any]:
        rss, source = read()
        rss_mb = rss / MB
        return {
            "status": config.memory_mb.status(rss_mb),
            "rss_mb": round(rss_mb, 1),
            "source": source,
            "thresholds": config.memory_mb.describe(),
        }

    return memory


def disk_check(config: HealthConfig) -> Check:
    async def disk() -> dict[str, Any]:
        # Resolved per check: the store creates the database's directory only when it opens.
        path = disk_path(config.database)
        if path is None:
            return {"status": "healthy", "path": None, "detail": "in-memory database"}
        return disk_report(path, config)

    return disk


async def _ping(store: Any, limit: float | None) -> tuple[float | None, str | None]:
    """One store's ping latency in ms, or its error (no answer within ``limit`` s included)."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(store.ping(), limit)
    except TimeoutError:
        return None, f"no answer within {limit:g} s"
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return None, message
    return (time.perf_counter() - started) * 1000, None


def stores_check(nexus: Nexus, threshold: Threshold) -> Check:
    timeout = threshold.unhealthy / 1000 if threshold.unhealthy else None

    async def stores() -> dict[str, Any]:
        service = nexus.service
        if service is None:
            return {"status": "unhealthy", "error": "the stores are not open"}
        named = {"executions": service.executions, "sessions": service.sessions}
        results = await asyncio.gather(*(_ping(s, timeout) for s in named.values()))
        report = store_report(dict(zip(named, results, strict=True)), threshold)
        for name, store in named.items():
            report["stores"][name]["backend"] = type(store).__name__
        return report

    return stores


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- hooks --------------------------------------------------------------------------------------
@hookimpl
def register_settings(nexus: Nexus) -> tuple[Setting, ...]:
    return SETTINGS


@hookimpl
def register_routes(nexus: Nexus) -> list[web.RouteDef]:
    return [
        web.get("/health/live", live, allow_head=True),
        web.get("/health/ready", ready, allow_head=True),
    ]


@hookimpl
def health_components(nexus: Nexus) -> list[tuple[str, Check]]:
    config = HealthConfig.from_settings(nexus.settings)  # bad thresholds fail startup
    return [
        ("event_loop", event_loop_check(nexus, config)),
        ("memory", memory_check(config)),
        ("disk", disk_check(config)),
        ("stores", stores_check(nexus, config.store_latency_ms)),
    ]


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any]:
    async def health_ctx(app: web.Application) -> AsyncIterator[None]:
        """Start the lag monitor; flag shutdown as soon as aiohttp begins it."""
        config = HealthConfig.from_settings(app[NEXUS].settings)
        state = HealthState(config, LoopLagMonitor(config.lag_interval))
        app[HEALTH_STATE] = state

        async def mark_shutting_down(app: web.Application) -> None:
            state.shutting_down = True

        # Runs at startup, before aiohttp freezes the signals: on_shutdown fires when the
        # listeners close, before in-flight requests are drained.
        app.on_shutdown.append(mark_shutting_down)
        state.monitor.start()
        try:
            yield
        finally:
            state.shutting_down = True
            await state.monitor.stop()

    return [health_ctx]
