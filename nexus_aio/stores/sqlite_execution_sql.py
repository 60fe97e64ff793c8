"""The SQL of the SQLite executions store: schema, statements, and rows to records and back.

Every function taking a ``conn`` runs on the database's worker thread (see ``sqlite_worker``);
:class:`~nexus_aio.stores.sqlite_executions.SQLiteExecutionStore` decides when.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, TypeVar

import orjson

from nexus_aio.stores.executions import (
    _ORJSON_OPTIONS,
    EVERYONE,
    INTERRUPTED_ERROR,
    TERMINAL,
    Everyone,
    ExecutionEvent,
    ExecutionRecord,
    IdempotencyEntry,
    SortKey,
    json_text,
)

_T = TypeVar("_T")
_I = TypeVar("_I")

SCHEMA_VERSION = 4
COMPONENT = "executions"
RECORD_COLUMNS = (
    "id, workflow, mode, status, inputs, created_at, result, error, started_at, finished_at,"
    " session_id, request_id, actor, attempts, trace_id, trigger, schedule_id, owner"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS nexus_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    created_at REAL NOT NULL,
    result TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    session_id TEXT,
    request_id TEXT,
    actor TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    trace_id TEXT,
    trigger TEXT,
    schedule_id TEXT,
    owner TEXT,
    events TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_created ON executions (created_at, id);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow, created_at, id);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, created_at, id);
CREATE INDEX IF NOT EXISTS executions_by_finished ON executions (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS execution_events (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency_keys (expires_at);
INSERT OR IGNORE INTO nexus_schema (component, version) VALUES ('{COMPONENT}', {SCHEMA_VERSION});
"""
# What brings a file of version ``v - 1`` to version ``v`` (files keep their data).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE executions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",),
    3: tuple(
        f"ALTER TABLE executions ADD COLUMN {column} TEXT"
        for column in ("trace_id", "trigger", "schedule_id", "owner")
    ),
    4: ("ALTER TABLE executions ADD COLUMN events TEXT",),
}
# ``events``: a whole event log written with its run's final record (see ``write_batch``); a later
# write without one keeps it.
_UPSERT_RECORD = (
    f"INSERT INTO executions ({RECORD_COLUMNS}, events) VALUES {{values}}"
    " ON CONFLICT(id) DO UPDATE SET workflow=excluded.workflow, mode=excluded.mode,"
    " status=excluded.status, inputs=excluded.inputs, created_at=excluded.created_at,"
    " result=excluded.result, error=excluded.error, started_at=excluded.started_at,"
    " finished_at=excluded.finished_at, session_id=excluded.session_id,"
    " request_id=excluded.request_id, actor=excluded.actor, attempts=excluded.attempts,"
    " trace_id=excluded.trace_id, trigger=excluded.trigger, schedule_id=excluded.schedule_id,"
    " owner=excluded.owner, events=coalesce(excluded.events, executions.events)"
)
# Events are immutable and numbered by the caller, so rewriting one (a retried flush) is harmless.
_INSERT_EVENT = (
    "INSERT OR REPLACE INTO execution_events (execution_id, seq, type, data, ts) VALUES {values}"
)
# Rows per statement in a batch write. sqlite3 releases the GIL around every statement step, and
# each release is a hand-off with the event loop's thread: one step per row made every row of a
# flush a potential stall of the loop, a statement of many rows makes it one per chunk.
_ROWS_PER_STATEMENT = 100


def _chunk_sizes(rows: int) -> list[int]:
    """How :func:`_insert_many` splits ``rows``: full chunks, then the rest as a multiple of ten
    and the units (so 347 rows go as 100, 100, 100, 40, 7).

    Preparing a statement of many rows costs about three times running it (0.9 ms against 0.3
    for 100 upserts), and sqlite3 keeps prepared statements by their text in a cache of 128: a
    last chunk of any size made up to a hundred texts per template, each prepared when first seen
    and again whenever other statements had pushed it out. These sizes make 19 texts per
    template.
    """
    sizes = [_ROWS_PER_STATEMENT] * (rows // _ROWS_PER_STATEMENT)
    rest = rows % _ROWS_PER_STATEMENT
    sizes.extend(size for size in (rest - rest % 10, rest % 10) if size)
    return sizes


@functools.lru_cache(maxsize=64)
def _statement(template: str, width: int, count: int) -> str:
    """``template`` with its ``{values}`` slot filled for ``count`` rows of ``width`` values."""
    one = "(" + ",".join("?" * width) + ")"
    return template.format(values=",".join([one] * count))


def _insert_many(
    conn: sqlite3.Connection,
    template: str,
    items: Sequence[_I],
    make_row: Callable[[_I], tuple[Any, ...]],
) -> None:
    """``template`` (with a ``{values}`` slot) for the rows of ``items``, many rows per statement.

    Each chunk's rows are made (JSON, with the GIL held) just before its statement runs (without
    it): the writer never holds the GIL for more than one chunk, so a big batch cannot stall the
    event loop's thread for the time its whole serialisation takes."""
    start = 0
    width = 0
    for count in _chunk_sizes(len(items)):
        rows = [make_row(item) for item in items[start : start + count]]
        width = width or len(rows[0])
        conn.execute(_statement(template, width, count), list(chain.from_iterable(rows)))
        start += count


_PUT_IDEMPOTENCY = (
    "INSERT INTO idempotency_keys (key, request_hash, execution_id, status, body, expires_at)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET request_hash=excluded.request_hash,"
    " execution_id=excluded.execution_id, status=excluded.status, body=excluded.body,"
    " expires_at=excluded.expires_at WHERE idempotency_keys.expires_at <= ?"
)


# -- rows ----------------------------------------------------------------------------------------
def _loads_or_none(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


# Bound where a column is NULL. CPython's sqlite3 (3.11) passes every None parameter through its
# adapter protocol (two failed attribute lookups, each formatting an AttributeError, ~0.3 us with
# the GIL held); a float binds directly, and SQLite stores a bound NaN as NULL.
_NULL = float("nan")


def record_row(r: ExecutionRecord, events: str | None) -> tuple[Any, ...]:
    """The parameters of one row of ``_UPSERT_RECORD`` (``events``: the kept event log)."""
    null = _NULL
    return (
        r.id,
        r.workflow,
        r.mode,
        r.status,
        json_text(r.inputs),
        r.created_at,
        null if r.result is None else json_text(r.result),
        null if r.error is None else json_text(r.error),
        null if r.started_at is None else r.started_at,
        null if r.finished_at is None else r.finished_at,
        null if r.session_id is None else r.session_id,
        null if r.request_id is None else r.request_id,
        null if r.actor is None else r.actor,
        r.attempts,
        null if r.trace_id is None else r.trace_id,
        null if r.trigger is None else r.trigger,
        null if r.schedule_id is None else r.schedule_id,
        null if r.owner is None else r.owner,
        null if events is None else events,
    )


def row_record(row: tuple[Any, ...]) -> ExecutionRecord:
    return ExecutionRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        orjson.loads(row[4]),
        row[5],
        _loads_or_none(row[6]),
        _loads_or_none(row[7]),
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
    )


# -- worker-thread bodies -------------------------------------------------------------------------
def transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``work`` in one IMMEDIATE transaction (the write lock is taken up front, so
    ``busy_timeout`` covers it)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, or migrate an older file, unless it is at this version (then a read-only
    file still opens). The version is read again under the write lock: another process opening
    the same file may have migrated it meanwhile."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return

    def work(conn: sqlite3.Connection) -> None:
        version = _schema_version(conn)
        if version is not None:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(statement)
            conn.execute(
                "UPDATE nexus_schema SET version = ? WHERE component = ?",
                (SCHEMA_VERSION, COMPONENT),
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)

    transaction(conn, work)


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The file's version of this component (None: no tables yet); refuses a newer one."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'nexus_schema'"
    ).fetchone()
    if exists is None:
        return None
    row = conn.execute(
        "SELECT version FROM nexus_schema WHERE component = ?", (COMPONENT,)
    ).fetchone()
    if row is not None and row[0] > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"schema version {row[0]} is newer than this nexus_aio ({SCHEMA_VERSION})"
        )
    return None if row is None else int(row[0])


def query(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _event_log_text(events: list[ExecutionEvent]) -> str:
    """A whole event log as one JSON array of ``[seq, type, data, ts]``, in one ``orjson`` call;
    when some event's ``data`` needs :func:`json_text`'s fallbacks, each ``data`` is encoded on
    its own, as an event row's is (the text is the same whenever both succeed)."""
    try:
        return orjson.dumps(
            [[e.seq, e.type, e.data, e.ts] for e in events], default=str, option=_ORJSON_OPTIONS
        ).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    dumps = orjson.dumps
    return (
        "["
        + ",".join(
            f"[{e.seq},{dumps(e.type).decode()},{json_text(e.data)},{dumps(e.ts).decode()}]"
            for e in events
        )
        + "]"
    )


def write_batch(
    conn: sqlite3.Connection,
    records: list[ExecutionRecord],
    events: dict[str, list[ExecutionEvent]],
) -> None:
    """One transaction for a whole write-behind batch (serialised here, off the event loop, a
    statement's rows at a time).

    A finished run whose whole event log (from seq 1) is in the batch with its record, as a
    synchronous run's always is, keeps that log in its record's row: one row instead of one per
    event (each row is an insert into the events table's B-tree, at a random place). Later
    events, if any, go to the events table; :func:`read_events` merges both.
    """
    logged: set[str] = set()
    for r in records:
        log = events.get(r.id)
        if log and log[0].seq == 1 and r.status in TERMINAL:
            logged.add(r.id)

    def record_with_log(r: ExecutionRecord) -> tuple[Any, ...]:
        return record_row(r, _event_log_text(events[r.id]) if r.id in logged else None)

    event_items = [
        (execution_id, e)
        for execution_id, evs in events.items()
        if execution_id not in logged
        for e in evs
    ]

    def work(conn: sqlite3.Connection) -> None:
        if records:
            _insert_many(conn, _UPSERT_RECORD, records, record_with_log)
        if event_items:
            _insert_many(conn, _INSERT_EVENT, event_items, _event_row)

    transaction(conn, work)


def _event_row(item: tuple[str, ExecutionEvent]) -> tuple[Any, ...]:
    execution_id, e = item
    return (execution_id, e.seq, e.type, json_text(e.data), e.ts)


def read_events(
    conn: sqlite3.Connection, execution_id: str, after_seq: int
) -> list[ExecutionEvent]:
    """The stored events of ``execution_id`` after ``after_seq``: the event rows merged with the
    log kept in the record's row (by seq; both never disagree on one)."""
    rows = conn.execute(
        "SELECT seq, type, data, ts FROM execution_events"
        " WHERE execution_id = ? AND seq > ? ORDER BY seq",
        (execution_id, after_seq),
    ).fetchall()
    stored = [ExecutionEvent(seq, kind, orjson.loads(data), ts) for seq, kind, data, ts in rows]
    kept = conn.execute("SELECT events FROM executions WHERE id = ?", (execution_id,)).fetchone()
    if kept is None or kept[0] is None:
        return stored
    logged = [ExecutionEvent(*item) for item in orjson.loads(kept[0]) if item[0] > after_seq]
    if not stored:
        return logged
    by_seq = {e.seq: e for e in logged}
    by_seq.update((e.seq, e) for e in stored)
    return [by_seq[seq] for seq in sorted(by_seq)]


def mark_interrupted(conn: sqlite3.Connection, now: float, owner: str | None) -> int:
    error = json_text(INTERRUPTED_ERROR)

    def work(conn: sqlite3.Connection) -> int:
        sql = (
            "UPDATE executions SET status = 'interrupted', finished_at = ?, error = ?"
            " WHERE status IN ('queued', 'running')"
        )
        if owner is None:
            return conn.execute(sql, (now, error)).rowcount
        return conn.execute(sql + " AND owner = ?", (now, error, owner)).rowcount

    return transaction(conn, work)


def list_filter(
    workflow: str | None,
    status: str | None,
    after: SortKey | None,
    visible_to: str | Everyone | None = EVERYONE,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if visible_to is None:
        clauses.append("actor IS NULL")
    elif visible_to is not EVERYONE:
        clauses.append("(actor IS NULL OR actor = ?)")
        params.append(visible_to)
    if workflow is not None:
        clauses.append("workflow = ?")
        params.append(workflow)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if after is not None:
        clauses.append("(created_at, id) < (?, ?)")
        params.extend(after)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def summary_columns(max_value_bytes: int | None) -> tuple[str, list[Any]]:
    """The columns of :func:`summary_record`: values above ``max_value_bytes`` stay in the
    database (``inputs`` reads NULL, ``result`` and ``error`` read '', which no stored JSON is)."""
    if max_value_bytes is None:
        return RECORD_COLUMNS, []
    left_out = {"inputs": "NULL", "result": "''", "error": "''"}
    columns = [
        f"CASE WHEN length(CAST({name} AS BLOB)) > ? THEN {left_out[name]} ELSE {name} END"
        if name in left_out
        else name
        for name in (column.strip() for column in RECORD_COLUMNS.split(","))
    ]
    return ", ".join(columns), [max_value_bytes] * len(left_out)


def summary_record(row: tuple[Any, ...]) -> ExecutionRecord:
    """A row of :func:`summary_columns`: what was left in the database is named in
    ``truncated``."""
    inputs, result, error = row[4], row[6], row[7]
    if inputs is not None and result != "" and error != "":
        return row_record(row)
    record = row_record((*row[:4], "null", row[5], result or None, error or None, *row[8:]))
    truncated = [
        name
        for name, value in (("inputs", inputs), ("result", result), ("error", error))
        if (value is None if name == "inputs" else value == "")
    ]
    if inputs is not None:
        record.inputs = orjson.loads(inputs)
    record.truncated = tuple(truncated)
    return record


def purge(conn: sqlite3.Connection, cutoff: float | None, max_count: int | None, now: float) -> int:
    def work(conn: sqlite3.Connection) -> int:
        doomed: set[str] = set()
        if cutoff is not None:
            rows = conn.execute(
                "SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?",
                (cutoff,),
            )
            doomed.update(row[0] for row in rows)
        if max_count is not None:
            rows = conn.execute(
                "SELECT id, status FROM executions ORDER BY created_at DESC, id DESC"
                " LIMIT -1 OFFSET ?",
                (max_count,),
            )
            doomed.update(row[0] for row in rows if row[1] in TERMINAL)
        ids = [(execution_id,) for execution_id in doomed]
        conn.executemany("DELETE FROM execution_events WHERE execution_id = ?", ids)
        conn.executemany("DELETE FROM executions WHERE id = ?", ids)
        conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
        return len(ids)

    return transaction(conn, work)


def get_idempotency(conn: sqlite3.Connection, key: str, now: float) -> IdempotencyEntry | None:
    row = conn.execute(
        "SELECT key, request_hash, execution_id, status, body, expires_at"
        " FROM idempotency_keys WHERE key = ? AND expires_at > ?",
        (key, now),
    ).fetchone()
    if row is None:
        return None
    key, request_hash, execution_id, status, body, expires_at = row
    return IdempotencyEntry(key, request_hash, execution_id, status, bytes(body), expires_at)


def put_idempotency(conn: sqlite3.Connection, entry: IdempotencyEntry, now: float) -> bool:
    params = (
        entry.key,
        entry.request_hash,
        entry.execution_id,
        entry.status,
        entry.body,
        entry.expires_at,
        now,
    )
    return transaction(conn, lambda conn: conn.execute(_PUT_IDEMPOTENCY, params).rowcount > 0)


def settle_idempotency(conn: sqlite3.Connection, entry: IdempotencyEntry) -> bool:
    cursor = conn.execute(
        "UPDATE idempotency_keys SET request_hash = ?, status = ?, body = ?, expires_at = ?"
        " WHERE key = ? AND execution_id = ?",
        (
            entry.request_hash,
            entry.status,
            entry.body,
            entry.expires_at,
            entry.key,
            entry.execution_id,
        ),
    )
    return cursor.rowcount > 0


def release_idempotency(conn: sqlite3.Connection, key: str, execution_id: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM idempotency_keys WHERE key = ? AND execution_id = ?", (key, execution_id)
    )
    return cursor.rowcount > 0


def probe_write(conn: sqlite3.Connection) -> None:
    """Take the write lock, write a row and roll back: proves writability, changes nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE nexus_schema SET version = version WHERE component = ?", (COMPONENT,))
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
