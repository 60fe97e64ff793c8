"""``serve --workers N``: several processes share one port and the SQLite store."""

from __future__ import annotations

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
