"""Built-in health components: the API itself and the stores."""

from __future__ import annotations

import time
from typing import Any

from nexus_aio.hookspecs import hookimpl


@hookimpl
def health_components(nexus: Any) -> list[tuple[str, Any]]:
    async def api() -> dict[str, Any]:
        service = nexus.service
        return {
            "status": "healthy",
            "running_executions": service.running if service else 0,
            "max_concurrent_requests": nexus.settings.max_concurrent_requests,
        }

    async def database() -> dict[str, Any]:
        started = time.perf_counter()
        service = nexus.service
        await service.executions.ping()
        await service.sessions.ping()
        return {
            "status": "healthy",
            "backend": type(service.executions).__name__,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    return [("api", api), ("database", database)]
