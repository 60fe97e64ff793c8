"""A server killed with SIGKILL mid-run, restarted on the same SQLite file: nothing is lost.

Finished async runs keep their results (their final save is durable); runs that were queued or
running read ``interrupted`` with a clear error, and their stored events end with that error.
"""

from __future__ import annotations

import signal
import sqlite3
import textwrap
import time

import httpx

from nexus_aio.testing import ServerProcess

APP = textwrap.dedent(
    """
    import asyncio

    from nexus_aio import Context, Nexus

    app = Nexus(load_entry_points=False)


    @app.workflow("quick")
    async def quick(n: int, ctx: Context) -> dict:
        ctx.progress(1.0, "done")
        return {"n": n}


    @app.workflow("stuck")
    async def stuck(ctx: Context) -> None:
        ctx.emit("parked", {"for": "ever"})
        await asyncio.sleep(3600)
    """
)


def submit(client: httpx.Client, name: str, inputs: dict) -> str:
    resp = client.post(f"/workflows/{name}/execute", json={"inputs": inputs, "mode": "async"})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["workflow_id"])


def wait_for_stored_events(db: str, execution_ids: list[str], count: int) -> None:
    """Running executions' events reach the file in the background; wait until they have."""
    marks = ",".join("?" * len(execution_ids))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            (stored,) = conn.execute(
                f"SELECT count(*) FROM execution_events WHERE execution_id IN ({marks})",
                execution_ids,
            ).fetchone()
        if stored >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"only {stored} of {count} events were stored")


def test_sigkill_then_restart_keeps_finished_runs_and_interrupts_unfinished(tmp_path):
    (tmp_path / "killapp.py").write_text(APP)
    env = {"NEXUS_DATABASE": str(tmp_path / "nexus.db"), "PYTHONPATH": str(tmp_path)}
    args = ["serve", "--app", "killapp:app"]
    with ServerProcess(args, cwd=tmp_path, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            quick = [submit(client, "quick", {"n": n}) for n in range(3)]
            stuck = [submit(client, "stuck", {}) for _ in range(2)]
            for execution_id in quick:
                record = client.get(f"/executions/{execution_id}", params={"wait": 5}).json()
                assert record["status"] == "succeeded"
            for execution_id in stuck:
                record = client.get(f"/executions/{execution_id}").json()
                assert record["status"] == "running"
            wait_for_stored_events(env["NEXUS_DATABASE"], stuck, 4)  # start + parked, twice
        server.stop(signal.SIGKILL)
        assert server.proc.returncode == -signal.SIGKILL

    with ServerProcess(args, cwd=tmp_path, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for n, execution_id in enumerate(quick):
                record = client.get(f"/executions/{execution_id}").json()
                assert record["status"] == "succeeded" and record["result"] == {"n": n}
                events = client.get(f"/executions/{execution_id}/events").text
                assert events.count("event: complete") == 1
            for execution_id in stuck:
                record = client.get(f"/executions/{execution_id}").json()
                assert record["status"] == "interrupted" and record["finished_at"]
                assert record["error"]["type"] == "Interrupted"
                assert "stopped before this execution finished" in record["error"]["message"]
                resp = client.delete(f"/executions/{execution_id}")
                assert resp.status_code == 409
                events = client.get(f"/executions/{execution_id}/events").text
                heads = [ln for ln in events.splitlines() if ln.startswith(("id", "event"))]
                assert heads == [
                    "id: 1", "event: start", "id: 2", "event: parked", "id: 3", "event: error",
                ]  # fmt: skip
                assert '"type":"Interrupted"' in events
            history = client.get("/executions", params={"status": "interrupted"}).json()
            assert sorted(e["id"] for e in history["executions"]) == sorted(stuck)
        output = server.stop()
    assert "2 executions were interrupted" in output
