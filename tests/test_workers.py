"""``serve --workers N``: several processes share one port and the SQLite store."""

from __future__ import annotations

import subprocess
import sys

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
        pids = set()
        ids = []
        for _ in range(60):
            # a new connection each time, so the kernel can pick either worker
            data = requests.post(
                f"{server.url}/workflows/pid/execute",
                json={"inputs": {}},
                headers={"Connection": "close"},
            ).json()
            pids.add(data["result"])
            ids.append(data["workflow_id"])
        assert len(pids) == 2
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
