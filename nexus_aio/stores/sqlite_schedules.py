"""Schedules in the embedded SQLite database (the executions' file), surviving restarts.

The claim of a tick is one ``UPDATE ... WHERE next_run = ?``: of the ``--workers`` processes
sharing the file, exactly one sees its row change.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from nexus_aio.stores.schedules import Schedule, ScheduleStore
from nexus_aio.stores.sqlite_worker import SQLiteHandle

__all__ = ["SQLiteScheduleStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    next_run REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    inputs TEXT NOT NULL,
    cron TEXT,
    every REAL,
    timezone TEXT NOT NULL,
    paused INTEGER NOT NULL,
    catchup TEXT NOT NULL,
    webhook TEXT,
    session_id TEXT,
    actor TEXT,
    declared INTEGER NOT NULL,
    last_run REAL,
    last_execution_id TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (paused, next_run);
"""
_COLUMNS = (
    "id, workflow, next_run, created_at, updated_at, inputs, cron, every, timezone, paused, "
    "catchup, webhook, session_id, actor, declared, last_run, last_execution_id, last_error"
)


def _create_schema(conn: sqlite3.Connection) -> None:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schedules'"
    ).fetchone()
    if exists is None:
        conn.executescript(_SCHEMA)


def _row(s: Schedule) -> tuple[Any, ...]:
    return (
        s.id,
        s.workflow,
        s.next_run,
        s.created_at,
        s.updated_at,
        orjson.dumps(s.inputs).decode(),
        s.cron,
        s.every,
        s.timezone,
        int(s.paused),
        s.catchup,
        s.webhook,
        s.session_id,
        s.actor,
        int(s.declared),
        s.last_run,
        s.last_execution_id,
        s.last_error,
    )


def _schedule(row: tuple[Any, ...]) -> Schedule:
    return Schedule(
        id=row[0],
        workflow=row[1],
        next_run=row[2],
        created_at=row[3],
        updated_at=row[4],
        inputs=orjson.loads(row[5]),
        cron=row[6],
        every=row[7],
        timezone=row[8],
        paused=bool(row[9]),
        catchup=row[10],
        webhook=row[11],
        session_id=row[12],
        actor=row[13],
        declared=bool(row[14]),
        last_run=row[15],
        last_execution_id=row[16],
        last_error=row[17],
    )


def _put(conn: sqlite3.Connection, s: Schedule) -> None:
    marks = ", ".join("?" * 18)
    conn.execute(f"INSERT OR REPLACE INTO schedules ({_COLUMNS}) VALUES ({marks})", _row(s))


def _select(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Schedule]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM schedules {where}", params).fetchall()
    return [_schedule(row) for row in rows]


def _scalar(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    return conn.execute(sql, params).fetchone()[0]


def _rowcount(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


class SQLiteScheduleStore(ScheduleStore):
    def __init__(self, path: str, busy_timeout: float = 5.0) -> None:
        self._db = SQLiteHandle(path, "SQLite schedule store", busy_timeout)

    async def open(self) -> None:
        await self._db.open(_create_schema)

    async def close(self) -> None:
        await self._db.close()

    async def put(self, schedule: Schedule) -> None:
        await self._db.write(_put, schedule)

    async def get(self, schedule_id: str) -> Schedule | None:
        found = await self._db.read(_select, "WHERE id = ?", (schedule_id,))
        return found[0] if found else None

    async def all(self) -> list[Schedule]:
        return await self._db.read(_select, "ORDER BY created_at, id", ())

    async def count(self) -> int:
        return int(await self._db.read(_scalar, "SELECT COUNT(*) FROM schedules", ()))

    async def delete(self, schedule_id: str) -> bool:
        return (
            await self._db.write(_rowcount, "DELETE FROM schedules WHERE id = ?", (schedule_id,))
            > 0
        )

    async def due(self, now: float, limit: int) -> list[Schedule]:
        return await self._db.read(
            _select, "WHERE paused = 0 AND next_run <= ? ORDER BY next_run LIMIT ?", (now, limit)
        )

    async def next_due(self) -> float | None:
        value = await self._db.read(
            _scalar, "SELECT MIN(next_run) FROM schedules WHERE paused = 0", ()
        )
        return None if value is None else float(value)

    async def advance(
        self, schedule_id: str, expected: float, next_run: float, fired: float | None
    ) -> bool:
        changed = await self._db.write(
            _rowcount,
            "UPDATE schedules SET next_run = ?, last_run = COALESCE(?, last_run) "
            "WHERE id = ? AND next_run = ? AND paused = 0",
            (next_run, fired, schedule_id, expected),
        )
        return changed > 0

    async def note_run(self, schedule_id: str, execution_id: str | None, error: str | None) -> None:
        await self._db.write(
            _rowcount,
            "UPDATE schedules SET last_execution_id = ?, last_error = ? WHERE id = ?",
            (execution_id, error, schedule_id),
        )
