"""Retries (``RetryPolicy``) over real HTTP: sync, stream and async runs of flaky workflows, giving
up, what is never retried, ``retry_on``, backoffs that hold no slot, and ``attempts`` in the
memory and SQLite stores (an older SQLite file is migrated)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from nexus_aio import Nexus, RetryPolicy, ValidationError
from nexus_aio.errors import RegistrationError
from nexus_aio.stores.sqlite_execution_sql import SCHEMA_VERSION
from nexus_aio.stores.sqlite_executions import SQLiteExecutionStore
from nexus_aio.testing import ServerProcess, make_app, parse_sse, read_sse

FAST = {"initial_delay": 0.05, "backoff": 2.0, "max_delay": 1.0, "jitter": False}


def flaky_app(failures: int = 2, max_attempts: int = 3, **settings: Any) -> tuple[Nexus, list[int]]:
    """``flaky`` fails ``failures`` times (``ConnectionError("down N")``), then answers."""
    settings.setdefault("load_entry_points", False)
    app = make_app(**settings)
    calls: list[int] = []

    @app.workflow(retry=RetryPolicy(max_attempts=max_attempts, **FAST))
    async def flaky(x: int = 1) -> dict[str, int]:
        calls.append(x)
        if len(calls) <= failures:
            raise ConnectionError(f"down {len(calls)}")
        return {"x": x, "calls": len(calls)}

    return app, calls


async def record_of(http: aiohttp.ClientSession, url: str, execution_id: str, wait: float = 0):
    async with http.get(f"{url}/executions/{execution_id}", params={"wait": str(wait)}) as resp:
        assert resp.status == 200
        return await resp.json()


async def events_of(http: aiohttp.ClientSession, url: str, execution_id: str) -> list[Any]:
    async with http.get(f"{url}/executions/{execution_id}/events") as resp:
        assert resp.status == 200
        return parse_sse(await resp.text())


def assert_two_retries(events: list[Any]) -> None:
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["start", "retry", "retry", "complete"], kinds
    first, second = events[1][2], events[2][2]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert first["max_attempts"] == 3
    assert first["error"]["type"] == "WorkflowExecutionError"
    assert first["error"]["message"] == "down 1" and second["error"]["message"] == "down 2"
    assert first["error"]["details"]["exception"] == "ConnectionError"
    assert (first["delay"], second["delay"]) == (0.05, 0.1)  # initial_delay, then * backoff


async def submit(http: aiohttp.ClientSession, url: str, name: str, **inputs: Any) -> str:
    async with http.post(
        f"{url}/workflows/{name}/execute", json={"inputs": inputs, "mode": "async"}
    ) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["workflow_id"])


async def wait_for(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- a flaky workflow succeeds on its third attempt -------------------------------------------
async def test_sync_run_succeeds_on_its_third_attempt_with_two_retry_events(nexus_server, http):
    app, calls = flaky_app()
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/flaky/execute", json={"inputs": {"x": 7}}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["success"] is True and body["result"] == {"x": 7, "calls": 3}
    assert calls == [7, 7, 7]
    record = await record_of(http, url, body["workflow_id"])
    assert record["status"] == "succeeded" and record["attempts"] == 3
    assert_two_retries(await events_of(http, url, body["workflow_id"]))


async def test_stream_run_shows_the_retry_events_live(nexus_server, http):
    app, _ = flaky_app()
    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/flaky/execute", json={"inputs": {}, "mode": "stream"}
    ) as resp:
        assert resp.status == 200
        events = await read_sse(resp)
    assert_two_retries(events)
    assert events[-1][2]["result"] == {"x": 1, "calls": 3}
    record = await record_of(http, url, events[0][2]["workflow_id"], wait=5)
    assert record["attempts"] == 3 and record["mode"] == "stream"


async def test_async_run_succeeds_on_its_third_attempt_and_lists_its_attempts(
    nexus_server, http, tmp_path
):
    app, _ = flaky_app(database=str(tmp_path / "nexus.db"))  # the SQLite store
    url = await nexus_server(app)
    execution_id = await submit(http, url, "flaky")
    record = await record_of(http, url, execution_id, wait=10)
    assert record["status"] == "succeeded" and record["attempts"] == 3
    assert record["result"] == {"x": 1, "calls": 3}
    assert_two_retries(await events_of(http, url, execution_id))
    async with http.get(f"{url}/executions", params={"workflow": "flaky"}) as resp:
        items = (await resp.json())["executions"]
    assert [(i["id"], i["attempts"]) for i in items] == [(execution_id, 3)]


async def test_a_run_that_succeeds_at_once_has_one_attempt(nexus_server, http):
    url = await nexus_server(make_app(load_entry_points=False))
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 2}}) as r:
        execution_id = (await r.json())["workflow_id"]
    assert (await record_of(http, url, execution_id))["attempts"] == 1


# -- giving up -------------------------------------------------------------------------------
async def test_sync_run_gives_up_after_max_attempts_keeping_the_last_error(nexus_server, http):
    app, calls = flaky_app(failures=99)
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/flaky/execute", json={"inputs": {}}) as resp:
        assert resp.status == 500
        body = await resp.json()
    assert body["error"]["message"] == "down 3"
    assert len(calls) == 3
    record = await record_of(http, url, body["workflow_id"])
    assert record["status"] == "failed" and record["attempts"] == 3
    assert record["error"]["message"] == "down 3"
    kinds = [kind for _, kind, _ in await events_of(http, url, body["workflow_id"])]
    assert kinds == ["start", "retry", "retry", "error"]


async def test_async_run_gives_up_after_max_attempts_keeping_the_last_error(nexus_server, http):
    app, calls = flaky_app(failures=99, max_attempts=2)
    url = await nexus_server(app)
    execution_id = await submit(http, url, "flaky")
    record = await record_of(http, url, execution_id, wait=10)
    assert record["status"] == "failed" and record["attempts"] == 2
    assert record["error"]["type"] == "WorkflowExecutionError"
    assert record["error"]["message"] == "down 2"
    assert len(calls) == 2


# -- never retried ---------------------------------------------------------------------------
def policy_app(**settings: Any) -> tuple[Nexus, list[str], asyncio.Event]:
    settings.setdefault("load_entry_points", False)
    app = make_app(**settings)
    calls: list[str] = []
    gate = asyncio.Event()
    policy = RetryPolicy(max_attempts=5, **FAST)

    @app.workflow(retry=policy, timeout=0.3)
    async def stuck() -> str:
        calls.append("stuck")
        await asyncio.sleep(30)
        return "late"

    @app.workflow(retry=policy)
    async def gated() -> str:
        calls.append("gated")
        await gate.wait()
        raise ConnectionError("after the gate")

    @app.workflow(retry=policy)
    async def refuses(n: int) -> int:
        calls.append("refuses")
        raise ValidationError("n is not acceptable", details={"field": "n"})

    @app.workflow(retry=RetryPolicy(max_attempts=3, retry_on=(ConnectionError,), **FAST))
    async def picky(kind: str) -> str:
        calls.append(kind)
        raise {"connection": ConnectionError, "value": ValueError}[kind](kind)

    return app, calls, gate


async def test_a_timeout_is_not_retried(nexus_server, http):
    app, calls, _ = policy_app()
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/stuck/execute", json={"inputs": {}}) as resp:
        assert resp.status == 504
        execution_id = (await resp.json())["workflow_id"]
    record = await record_of(http, url, execution_id)
    assert record["status"] == "timed_out" and record["attempts"] == 1
    assert calls == ["stuck"]


async def test_a_cancelled_run_is_not_retried(nexus_server, http):
    app, calls, _ = policy_app()
    url = await nexus_server(app)
    execution_id = await submit(http, url, "gated")
    await wait_for(lambda: _status_is(http, url, execution_id, "running"))
    async with http.delete(f"{url}/executions/{execution_id}") as resp:
        assert resp.status == 200
    record = await record_of(http, url, execution_id, wait=5)
    assert record["status"] == "cancelled" and record["attempts"] == 1
    assert calls == ["gated"]
    assert "retry" not in [kind for _, kind, _ in await events_of(http, url, execution_id)]


async def test_invalid_inputs_and_client_errors_are_never_retried(nexus_server, http):
    app, calls, _ = policy_app()
    url = await nexus_server(app)
    async with http.post(f"{url}/workflows/refuses/execute", json={"inputs": {"n": "x"}}) as r:
        assert r.status == 400 and (await r.json())["error"]["type"] == "ValidationError"
    assert calls == []  # refused before running
    async with http.post(f"{url}/workflows/refuses/execute", json={"inputs": {"n": 1}}) as r:
        assert r.status == 400
        execution_id = (await r.json())["workflow_id"]
    assert calls == ["refuses"]  # a 4xx raised by the workflow itself: not retried either
    assert (await record_of(http, url, execution_id))["attempts"] == 1


async def test_retry_on_selects_the_errors_that_are_retried(nexus_server, http):
    app, calls, _ = policy_app()
    url = await nexus_server(app)
    for kind, exception, runs in (("value", "ValueError", 1), ("connection", "ConnectionError", 3)):
        calls.clear()
        async with http.post(
            f"{url}/workflows/picky/execute", json={"inputs": {"kind": kind}}
        ) as resp:
            assert resp.status == 500
            body = await resp.json()
        assert body["error"]["details"]["exception"] == exception
        assert len(calls) == runs
        assert (await record_of(http, url, body["workflow_id"]))["attempts"] == runs


async def test_sync_retry_that_cannot_start_within_the_request_timeout_gives_up(nexus_server, http):
    app = make_app(load_entry_points=False, request_timeout=1.0)
    calls: list[int] = []

    @app.workflow(retry=RetryPolicy(initial_delay=5.0, jitter=False))
    async def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    url = await nexus_server(app)
    started = time.monotonic()
    async with http.post(f"{url}/workflows/down/execute", json={"inputs": {}}) as resp:
        assert resp.status == 500 and (await resp.json())["error"]["message"] == "down"
    assert time.monotonic() - started < 1.0 and calls == [1]


async def test_cancelling_a_stream_run_during_its_backoff_ends_it_cancelled(nexus_server, http):
    app = make_app(load_entry_points=False)
    calls: list[int] = []

    @app.workflow(retry=RetryPolicy(initial_delay=20.0, jitter=False), timeout=60)
    async def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    url = await nexus_server(app)
    async with http.post(
        f"{url}/workflows/down/execute", json={"inputs": {}, "mode": "stream"}
    ) as stream:
        events = await read_sse(stream, limit=2)
        assert [kind for _, kind, _ in events] == ["start", "retry"]
        execution_id = events[0][2]["workflow_id"]
        record = await record_of(http, url, execution_id)
        assert record["status"] == "running" and record["attempts"] == 1  # waiting in place
        async with http.delete(f"{url}/executions/{execution_id}") as resp:
            assert resp.status == 200
        (_, kind, data), *_ = await read_sse(stream)
    assert kind == "error" and data["error"]["type"] == "Cancelled"
    record = await record_of(http, url, execution_id, wait=5)
    assert record["status"] == "cancelled" and record["attempts"] == 1 and calls == [1]


# -- async backoffs hold no slot ---------------------------------------------------------------
async def _status_is(http: aiohttp.ClientSession, url: str, execution_id: str, status: str):
    return (await record_of(http, url, execution_id))["status"] == status


async def test_async_backoff_frees_the_slot_for_other_runs_and_can_be_cancelled(nexus_server, http):
    app = make_app(load_entry_points=False, max_concurrent_requests=1)

    @app.workflow(retry=RetryPolicy(initial_delay=60.0, jitter=False))
    async def down() -> None:
        raise ConnectionError("down")

    url = await nexus_server(app)
    waiting = await submit(http, url, "down")

    async def in_backoff() -> bool:  # started, failed, and queued again
        record = await record_of(http, url, waiting)
        return record["started_at"] is not None and record["status"] == "queued"

    await wait_for(in_backoff)
    record = await record_of(http, url, waiting)
    assert record["status"] == "queued" and record["attempts"] == 1
    # the only slot is free: an async run and a sync run both proceed during the backoff
    other = await submit(http, url, "sum", a=2, b=3)
    assert (await record_of(http, url, other, wait=10))["result"] == 5
    async with http.post(f"{url}/workflows/sum/execute", json={"inputs": {"a": 1, "b": 1}}) as r:
        assert r.status == 200
    async with http.delete(f"{url}/executions/{waiting}") as resp:
        assert resp.status == 200
    record = await record_of(http, url, waiting, wait=5)
    assert record["status"] == "cancelled" and record["attempts"] == 1
    kinds = [kind for _, kind, _ in await events_of(http, url, waiting)]
    assert kinds == ["start", "retry", "error"]


# -- registration ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be between 1 and 100"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer"),
        ({"initial_delay": -1}, "initial_delay must be a finite number >= 0"),
        ({"backoff": 0.5}, "backoff must be a finite number >= 1"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number"),
        ({"initial_delay": 10, "max_delay": 5}, "max_delay (5) must be at least initial_delay"),
        ({"jitter": "yes"}, "jitter must be True or False"),
        ({"retry_on": ("ValueError",)}, "retry_on must be an exception class"),
    ],
)
def test_bad_retry_policy_arguments_are_refused_with_a_clear_error(arguments, message):
    with pytest.raises(RegistrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RetryPolicy(**arguments)
    with pytest.raises(ValueError):  # also a ValueError, for code that expects one
        RetryPolicy(**arguments)


def test_register_takes_a_retry_policy_only():
    app = Nexus(load_entry_points=False)
    with pytest.raises(RegistrationError, match="retry must be a RetryPolicy, got int"):
        app.register("three", lambda: 3, retry=3)  # type: ignore[arg-type]
    compiled = app.register("ok", lambda: 1, retry=RetryPolicy(retry_on=ConnectionError))
    assert compiled.retry is not None and compiled.retry.retry_on == (ConnectionError,)


def test_backoff_grows_to_max_delay_and_jitter_stays_within_half_of_it():
    policy = RetryPolicy(max_attempts=10, initial_delay=1, backoff=3, max_delay=20, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    jittered = RetryPolicy(initial_delay=4, max_delay=4)
    assert all(2 <= jittered.delay(1) <= 4 for _ in range(50))


# -- the SQLite store keeps attempts and migrates older files ---------------------------------
OLD_SCHEMA = """
CREATE TABLE nexus_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE executions (
    id TEXT PRIMARY KEY, workflow TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,
    inputs TEXT NOT NULL, created_at REAL NOT NULL, result TEXT, error TEXT, started_at REAL,
    finished_at REAL, session_id TEXT, request_id TEXT, actor TEXT
);
CREATE TABLE execution_events (
    execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
    ts REAL NOT NULL, PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, execution_id TEXT NOT NULL,
    status INTEGER NOT NULL, body BLOB NOT NULL, expires_at REAL NOT NULL
);
INSERT INTO nexus_schema VALUES ('executions', 1);
INSERT INTO executions VALUES
    ('old-1', 'sum', 'sync', 'succeeded', '{}', 1.0, '3', NULL, 1.0, 2.0, NULL, NULL, NULL);
"""


async def test_a_version_1_sqlite_file_is_migrated_and_keeps_its_records(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    conn.close()
    for expected in (1, 4):  # opening the migrated file again changes nothing
        store = SQLiteExecutionStore(str(path))
        await store.open()
        try:
            old = await store.get("old-1")
            assert old is not None and old.result == 3 and old.attempts == expected
            old.attempts = 4
            await store.save(old, durable=True)
        finally:
            await store.close()
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT version FROM nexus_schema").fetchone()[0]
        stored = conn.execute(
            "SELECT attempts, trace_id, trigger FROM executions WHERE id = 'old-1'"
        ).fetchone()
    conn.close()
    assert (version, stored) == (SCHEMA_VERSION, (4, None, None))


async def test_the_stream_of_a_retried_async_run_shows_retry_live(nexus_server, http):
    app, _ = flaky_app()
    url = await nexus_server(app)
    execution_id = await submit(http, url, "flaky")
    async with http.get(f"{url}/executions/{execution_id}/events") as resp:
        text = await resp.text()
    assert text.count("event: retry\n") == 2
    assert parse_sse(text)[-1][1] == "complete"


def test_retry_policy_is_importable_from_the_package_root():
    import nexus_aio

    assert "RetryPolicy" in nexus_aio.__all__ and nexus_aio.RetryPolicy is RetryPolicy


# -- a server stopping while a run waits out its backoff ---------------------------------------
PROCESS_APP = """
from nexus_aio import Nexus, RetryPolicy

app = Nexus(load_entry_points=False)


@app.workflow(retry=RetryPolicy(initial_delay=60.0, jitter=False))
def down() -> None:
    raise ConnectionError("down")
"""


def test_a_run_waiting_out_its_backoff_at_shutdown_is_interrupted_and_stays_so(tmp_path: Path):
    (tmp_path / "retryapp.py").write_text(PROCESS_APP)
    env = {"NEXUS_DATABASE": str(tmp_path / "nexus.db"), "PYTHONPATH": str(tmp_path)}
    args = ["serve", "--app", "retryapp:app"]
    with ServerProcess(args, cwd=tmp_path, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            resp = client.post("/workflows/down/execute", json={"inputs": {}, "mode": "async"})
            execution_id = resp.json()["workflow_id"]
            deadline = time.monotonic() + 10
            while True:  # until it has failed once and waits, queued, for its next attempt
                record = client.get(f"/executions/{execution_id}").json()
                if record["status"] == "queued" and record["started_at"] is not None:
                    break
                assert time.monotonic() < deadline, "the run never reached its backoff"
                time.sleep(0.05)
        server.stop(signal.SIGTERM)
    with ServerProcess(args, cwd=tmp_path, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            record = client.get(f"/executions/{execution_id}").json()
            events = parse_sse(client.get(f"/executions/{execution_id}/events").text)
    assert record["status"] == "interrupted" and record["attempts"] == 1
    assert [kind for _, kind, _ in events] == ["start", "retry", "error"]
