"""``python -m nexus_aio serve`` runs on uvloop's event loop when uvloop is installed (it is a
dependency on Linux), else on asyncio's; the heap built at startup is frozen out of the garbage
collector's full collections."""

from __future__ import annotations

import importlib.util

import requests

from nexus_aio.testing import ServerProcess

APP = """
import asyncio
import gc
from nexus_aio import Nexus

app = Nexus()


@app.workflow()
async def loop_kind() -> str:
    return type(asyncio.get_running_loop()).__module__


@app.workflow()
async def frozen_objects() -> int:
    return gc.get_freeze_count()
"""


def test_serve_runs_on_uvloop_when_it_is_installed(tmp_path):
    (tmp_path / "loopapp.py").write_text(APP)
    with ServerProcess(["serve", "--app", "loopapp:app"], cwd=tmp_path) as server:
        data = requests.post(
            f"{server.url}/workflows/loop_kind/execute", json={"inputs": {}}, timeout=10
        ).json()
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert data["result"].split(".")[0] == expected, data


def test_the_startup_heap_is_frozen_out_of_garbage_collection(tmp_path):
    (tmp_path / "loopapp.py").write_text(APP)
    with ServerProcess(["serve", "--app", "loopapp:app"], cwd=tmp_path) as server:
        data = requests.post(
            f"{server.url}/workflows/frozen_objects/execute", json={"inputs": {}}, timeout=10
        ).json()
    assert data["result"] > 50_000, data  # modules, plugins, routes: not walked under load
