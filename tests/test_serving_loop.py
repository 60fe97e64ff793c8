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
async def frozen_objects() -> list[int]:
    return [gc.get_freeze_count(), len(gc.get_objects())]
"""


def _served_result(tmp_path, workflow: str):
    """What ``workflow`` of APP returns when ``python -m nexus_aio serve`` runs it."""
    (tmp_path / "loopapp.py").write_text(APP)
    with ServerProcess(["serve", "--app", "loopapp:app"], cwd=tmp_path) as server:
        data = requests.post(
            f"{server.url}/workflows/{workflow}/execute", json={"inputs": {}}, timeout=10
        ).json()
    return data["result"]


def test_serve_runs_on_uvloop_when_it_is_installed(tmp_path):
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert _served_result(tmp_path, "loop_kind").split(".")[0] == expected


def test_the_startup_heap_is_frozen_out_of_garbage_collection(tmp_path):
    # modules, plugins, routes: never walked by a full collection under load
    frozen, collectable = _served_result(tmp_path, "frozen_objects")
    assert frozen > 10_000 and frozen > 2 * collectable, (frozen, collectable)
