"""Default stores: SQLite at ``database`` (``:memory:``-backed memory stores when asked)."""

from __future__ import annotations

from typing import Any

from nexus_aio.hookspecs import hookimpl


@hookimpl(trylast=True)
def storage_backend(nexus: Any, kind: str) -> Any:
    settings = nexus.settings
    memory = settings.database in ("memory", ":memory:")
    if kind == "executions":
        if memory:
            from nexus_aio.stores.executions import MemoryExecutionStore

            return MemoryExecutionStore(
                max_bytes=settings.memory_executions_max_bytes,
                max_idempotency_keys=settings.idempotency_max_keys,
                max_idempotency_bytes=settings.idempotency_max_bytes,
            )
        from nexus_aio.stores.sqlite_executions import SQLiteExecutionStore

        return SQLiteExecutionStore(settings.database)
    if kind == "sessions":
        if memory:
            from nexus_aio.stores.sessions import MemorySessionStore

            return MemorySessionStore(
                ttl=settings.session_ttl,
                max_sessions=settings.max_sessions,
                max_bytes=settings.memory_sessions_max_bytes,
            )
        from nexus_aio.stores.sqlite_sessions import SQLiteSessionStore

        return SQLiteSessionStore(
            settings.database, ttl=settings.session_ttl, max_sessions=settings.max_sessions
        )
    if kind == "webhooks":
        if memory:
            from nexus_aio.stores.webhooks import MemoryWebhookOutbox

            return MemoryWebhookOutbox()
        from nexus_aio.stores.sqlite_webhooks import SQLiteWebhookOutbox

        return SQLiteWebhookOutbox(settings.database)
    if kind == "schedules":
        if memory:
            from nexus_aio.stores.schedules import MemoryScheduleStore

            return MemoryScheduleStore()
        from nexus_aio.stores.sqlite_schedules import SQLiteScheduleStore

        return SQLiteScheduleStore(settings.database)
    if kind == "ratelimit":
        from nexus_aio.stores.ratelimit import MemoryRateLimiter

        return MemoryRateLimiter()
    return None
