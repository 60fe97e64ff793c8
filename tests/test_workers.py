"""``serve --workers N``: several processes share one port and the SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from nexus_aio.testing import ServerProcess

APP = """
import os
from nexus_aio import Nexus

app = Nexus()


@app.workflow()
async def pid() -> int:
    return os.getpid()
"""


def test_workers_share_the_port_and_store_and_drain_on_sigterm(tmp_path):
    (tmp_path / "pidapp.py").write_text(APP)
    db = tmp_path / "nexus.db"
    server = ServerProcess(
        ["serve", "--app", "pidapp:app", "--workers", "2"],
        cwd=tmp_path,
        env={"NEXUS_DATABASE": str(db)},
    )
    with server:
        ids_by_pid: dict[int, str] = {}
        # The port answers once the first worker listens; the second may bind a moment later.
        deadline = time.monotonic() + 30
        while len(ids_by_pid) < 2 and time.monotonic() < deadline:
            # a new connection each time, so the kernel can pick either worker
            data = requests.post(
                f"{server.url}/workflows/pid/execute",
                json={"inputs": {}},
                headers={"Connection": "close"},
                timeout=10,
            ).json()
            ids_by_pid.setdefault(data["result"], data["workflow_id"])
        assert len(ids_by_pid) == 2
        for execution_id in ids_by_pid.values():  # one store (written behind, ~50 ms)
            found = None
            deadline = time.monotonic() + 10
            while found is None and time.monotonic() < deadline:
                resp = requests.get(
                    f"{server.url}/executions/{execution_id}",
                    headers={"Connection": "close"},
                    timeout=10,
                )
                found = resp.json() if resp.status_code == 200 else None
            assert found is not None and found["status"] == "succeeded", execution_id
    out = server.stop()
    assert server.proc.returncode == 0, out
    assert "started 2 workers" in out
    assert db.exists()


def test_workers_refuse_in_memory_stores(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nexus_aio", "serve", "--workers", "2", "--port", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"NEXUS_DATABASE": ":memory:", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "in-memory stores" in result.stderr


HOLD_APP = """
import asyncio
import os
from pathlib import Path

from nexus_aio import Context, Nexus

app = Nexus()


@app.workflow()
async def hold(ctx: Context) -> int:
    Path(ctx.execution_id + ".pid").write_text(str(os.getpid()))
    await asyncio.sleep(60)
    return os.getpid()


@app.workflow()
async def pid() -> int:
    return os.getpid()
"""


def test_a_killed_worker_is_replaced_and_its_runs_read_interrupted(tmp_path):
    (tmp_path / "holdapp.py").write_text(HOLD_APP)
    server = ServerProcess(
        ["serve", "--app", "holdapp:app", "--workers", "2"],
        cwd=tmp_path,
        env={"NEXUS_DATABASE": str(tmp_path / "nexus.db")},
    )
    with server:
        run = requests.post(
            f"{server.url}/workflows/hold/execute",
            json={"inputs": {}, "mode": "async"},
            headers={"Connection": "close"},
            timeout=10,
        ).json()["workflow_id"]
        pid_file = tmp_path / f"{run}.pid"
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        owner = int(pid_file.read_text())
        os.kill(owner, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # recovered by the parent, then readable from the surviving workers
            try:
                record = requests.get(
                    f"{server.url}/executions/{run}", headers={"Connection": "close"}, timeout=5
                ).json()
            except requests.ConnectionError:  # the connection went to the dying worker
                record = {}
            if record.get("status") == "interrupted":
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.1)
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2:  # two live workers again, neither of them the killed one
            assert time.monotonic() < deadline, pids
            try:
                pids.add(
                    requests.post(
                        f"{server.url}/workflows/pid/execute",
                        json={"inputs": {}},
                        headers={"Connection": "close"},
                        timeout=5,
                    ).json()["result"]
                )
            except requests.ConnectionError:
                pass
        assert owner not in pids
    out = server.stop()
    assert f"worker {owner} exited" in out and "replaced by worker" in out, out
    assert server.proc.returncode == 0, out
