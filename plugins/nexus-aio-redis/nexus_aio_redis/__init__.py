"""nexus-aio-redis: sessions, rate limits and executions shared through Redis, to scale out.

Enabled by ``NEXUS_REDIS_URL`` (or ``Nexus(redis_url=...)``). Without it every hook returns None
and the core's own stores answer: the plugin costs nothing per request. With it:

* ``storage_backend("sessions")``: :class:`RedisSessionStore` (TTL by PEXPIRE, cross-process lock);
* ``storage_backend("executions")``: :class:`RedisExecutionStore` (records, history, events in
  Redis Streams followed live from any instance, idempotency keys);
* ``storage_backend("ratelimit")``: :class:`RedisRateLimiter` (GCRA in one Lua script);
* ``executor``: :class:`~nexus_aio_redis.dispatch.ArqExecutor` when ``redis_execute_async`` is on
  (async runs go to ``python -m nexus_aio worker`` processes);
* ``health_components``: ``redis`` (PING latency, ``degraded`` above ``redis_degraded_ms``);
* ``register_commands``: ``python -m nexus_aio worker`` runs queued async executions (arq).

Settings (:data:`SETTINGS`, declared through ``register_settings``: constructor keyword,
``app.api.<name>``, ``NEXUS_<NAME>``): ``redis_url``, ``redis_prefix`` (``nexus:``),
``redis_timeout`` (2 s per command), ``redis_lock_lease`` (10 s), ``redis_run_lease`` (10 s),
``redis_cancel_wait`` (5 s), ``redis_degraded_ms`` (50),
``redis_execute_async`` (off), and for the worker ``redis_max_tries`` (3), ``redis_worker_jobs``
(``max_concurrent_requests``), ``redis_poll_delay`` (0.1 s), ``redis_worker_grace`` (10 s).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nexus_aio import Setting, hookimpl
from nexus_aio.errors import ConfigurationError, StoreUnavailable

from .client import connect, redact
from .dispatch import ArqExecutor
from .executions import RedisExecutionStore
from .ratelimit import RedisRateLimiter
from .sessions import RedisSessionStore

if TYPE_CHECKING:
    from nexus_aio import Nexus
    from nexus_aio.execution.service import ExecutionService

__version__ = "0.1.0"
__all__ = [
    "SETTINGS",
    "RedisExecutionStore",
    "RedisRateLimiter",
    "RedisSessionStore",
    "health_components",
    "redis_url",
    "register_commands",
    "register_settings",
    "storage_backend",
]


SETTINGS = (
    Setting("redis_url", str | None, None, feature="redis", help="redis://...; unset: plugin off"),
    Setting("redis_prefix", str, "nexus:", feature="redis", help="prefix of every key"),
    Setting("redis_timeout", float, 2.0, feature="redis", help="seconds per Redis command"),
    Setting("redis_lock_lease", float, 10.0, feature="redis", help="session lock lease (s)"),
    Setting(
        "redis_run_lease",
        float,
        10.0,
        feature="redis",
        help="seconds a run's owner lease lasts unrenewed; then the run becomes interrupted",
    ),
    Setting(
        "redis_cancel_wait",
        float,
        5.0,
        feature="redis",
        help="seconds DELETE /executions/{id} waits for the owner of a run elsewhere to cancel it",
    ),
    Setting(
        "redis_execute_async",
        bool,
        False,
        feature="redis",
        help="queue async runs for `python -m nexus_aio worker` processes (arq)",
    ),
    Setting(
        "redis_degraded_ms", float, 50.0, feature="redis", help="PING latency reported degraded"
    ),
    Setting("redis_max_tries", int, 3, feature="redis", help="worker retries of a lost job"),
    Setting(
        "redis_worker_jobs",
        int | None,
        None,
        feature="redis",
        help="jobs a worker runs at once (unset: max_concurrent_requests)",
    ),
    Setting("redis_poll_delay", float, 0.1, feature="redis", help="worker queue poll delay (s)"),
    Setting(
        "redis_worker_grace",
        float,
        10.0,
        feature="redis",
        help="seconds after a job's timeout before another worker may take it",
    ),
)


def redis_url(nexus: Nexus) -> str | None:
    """The configured Redis URL, or None when the plugin is off."""
    url = nexus.settings.redis_url
    return str(url) if url else None


def _prefix(nexus: Nexus) -> str:
    return str(nexus.settings.redis_prefix)


@hookimpl
def register_settings(nexus: Nexus) -> tuple[Setting, ...]:
    return SETTINGS


@hookimpl
def storage_backend(nexus: Nexus, kind: str) -> Any:
    url = redis_url(nexus)
    if url is None:
        return None
    settings = nexus.settings
    timeout = settings.redis_timeout
    if kind == "sessions":
        return RedisSessionStore(
            connect(url, timeout=timeout),
            ttl=settings.session_ttl,
            prefix=_prefix(nexus),
            lock_lease=settings.redis_lock_lease,
            max_sessions=settings.max_sessions,
        )
    if kind == "executions":
        return RedisExecutionStore(
            connect(url, timeout=timeout),
            prefix=_prefix(nexus),
            lease=settings.redis_run_lease,
            cancel_wait=settings.redis_cancel_wait,
        )
    if kind == "ratelimit":
        return RedisRateLimiter(connect(url, timeout=timeout), prefix=_prefix(nexus))
    if kind == "webhooks":
        from nexus_aio_redis.webhooks import RedisWebhookOutbox

        return RedisWebhookOutbox(connect(url, timeout=timeout), prefix=_prefix(nexus))
    if kind == "schedules":
        from nexus_aio_redis.schedules import RedisScheduleStore

        return RedisScheduleStore(connect(url, timeout=timeout), prefix=_prefix(nexus))
    return None


@hookimpl
def executor(nexus: Nexus, service: ExecutionService) -> ArqExecutor | None:
    """Async runs go to arq workers when ``redis_execute_async`` is on (with ``redis_url``).

    Whatever the executor, cancel requests other instances place for this process's runs (and
    runs whose record another process ended) reach the service here.
    """
    if redis_url(nexus) is None:
        return None
    if isinstance(service.executions, RedisExecutionStore):
        service.executions.on_cancel_request = service.cancel
    if not nexus.settings.redis_execute_async:
        return None
    if not isinstance(service.executions, RedisExecutionStore):
        raise ConfigurationError("redis_execute_async needs the Redis executions store")
    return ArqExecutor(service, service.executions, _prefix(nexus))


@hookimpl
def health_components(nexus: Nexus) -> list[tuple[str, Any]] | None:
    url = redis_url(nexus)
    if url is None:
        return None
    threshold = nexus.settings.redis_degraded_ms
    shown = redact(url)

    async def redis_health() -> dict[str, Any]:
        service = nexus.service
        store = service.sessions if service is not None else None
        if not isinstance(store, RedisSessionStore):
            return {"status": "unhealthy", "url": shown, "error": "the app is not running"}
        started = time.perf_counter()
        try:
            await store.ping()
        except StoreUnavailable as exc:
            return {"status": "unhealthy", "url": shown, "error": exc.message}
        latency = (time.perf_counter() - started) * 1000
        return {
            "status": "healthy" if latency <= threshold else "degraded",
            "url": shown,
            "latency_ms": round(latency, 3),
            "degraded_above_ms": threshold,
        }

    return [("redis", redis_health)]


@hookimpl
def register_commands(nexus: Nexus, subparsers: Any) -> None:
    from .commands import add_commands

    add_commands(subparsers)
