"""The webhook outbox in the embedded SQLite database (the executions' file), surviving restarts.

Claims are a lease column updated inside one ``BEGIN IMMEDIATE`` transaction, so the
``--workers`` processes sharing the file never take the same due delivery.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from nexus_aio.stores.sqlite_worker import SQLiteHandle
from nexus_aio.stores.webhooks import Delivery, WebhookOutbox

__all__ = ["SQLiteWebhookOutbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    execution_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL,
    leased_until REAL,
    last_status INTEGER,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (state, next_at);
"""
_COLUMNS = (
    "execution_id, url, created_at, state, attempts, next_at, last_status, last_error, delivered_at"
)


def _create_schema(conn: sqlite3.Connection) -> None:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'webhook_outbox'"
    ).fetchone()
    if exists is None:
        conn.executescript(_SCHEMA)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(
        execution_id=row[0],
        url=row[1],
        created_at=row[2],
        state=row[3],
        attempts=row[4],
        next_at=row[5],
        last_status=row[6],
        last_error=row[7],
        delivered_at=row[8],
    )


def _add(conn: sqlite3.Connection, d: Delivery) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO webhook_outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.execution_id,
            d.url,
            d.created_at,
            d.state,
            d.attempts,
            d.next_at,
            d.last_status,
            d.last_error,
            d.delivered_at,
        ),
    )


def _ready(conn: sqlite3.Connection, execution_id: str, now: float) -> bool:
    cursor = conn.execute(
        "UPDATE webhook_outbox SET state = 'pending', next_at = ? "
        "WHERE execution_id = ? AND state = 'waiting'",
        (now, execution_id),
    )
    return cursor.rowcount > 0


def _waiting(conn: sqlite3.Connection, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT execution_id FROM webhook_outbox WHERE state = 'waiting' "
        "ORDER BY created_at LIMIT ?",
        (limit,),
    ).fetchall()
    return [row[0] for row in rows]


def _claim(conn: sqlite3.Connection, now: float, limit: int, lease: float) -> list[Delivery]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM webhook_outbox WHERE state = 'pending' AND next_at <= ? "
            "AND (leased_until IS NULL OR leased_until <= ?) ORDER BY next_at LIMIT ?",
            (now, now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE webhook_outbox SET leased_until = ? WHERE execution_id = ?",
            [(now + lease, row[0]) for row in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [_delivery(row) for row in rows]


def _attempted(conn: sqlite3.Connection, d: Delivery) -> None:
    conn.execute(
        "UPDATE webhook_outbox SET state = ?, attempts = ?, next_at = ?, leased_until = NULL, "
        "last_status = ?, last_error = ?, delivered_at = ? WHERE execution_id = ?",
        (
            d.state,
            d.attempts,
            d.next_at,
            d.last_status,
            d.last_error,
            d.delivered_at,
            d.execution_id,
        ),
    )


def _get(conn: sqlite3.Connection, execution_id: str) -> Delivery | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_outbox WHERE execution_id = ?", (execution_id,)
    ).fetchone()
    return None if row is None else _delivery(row)


def _purge(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute(
        "DELETE FROM webhook_outbox WHERE state IN ('delivered', 'failed') AND created_at < ?",
        (before,),
    ).rowcount


class SQLiteWebhookOutbox(WebhookOutbox):
    """The outbox table ``webhook_outbox``; writes are committed before the call returns (a
    delivery acknowledged to a client survives a crash)."""

    def __init__(self, path: str, busy_timeout: float = 5.0) -> None:
        self._db = SQLiteHandle(path, "SQLite webhook outbox", busy_timeout)

    async def open(self) -> None:
        await self._db.open(_create_schema)

    async def close(self) -> None:
        await self._db.close()

    async def add(self, delivery: Delivery) -> None:
        await self._db.write(_add, delivery)

    async def ready(self, execution_id: str, now: float) -> bool:
        return await self._db.write(_ready, execution_id, now)

    async def waiting(self, limit: int) -> list[str]:
        return await self._db.read(_waiting, limit)

    async def claim(self, now: float, limit: int, lease: float) -> list[Delivery]:
        return await self._db.write(_claim, now, limit, lease)

    async def attempted(self, delivery: Delivery) -> None:
        await self._db.write(_attempted, delivery)

    async def get(self, execution_id: str) -> Delivery | None:
        return await self._db.read(_get, execution_id)

    async def purge(self, finished_before: float) -> int:
        return await self._db.write(_purge, finished_before)
