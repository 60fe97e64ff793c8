"""For tests of ``serve --workers``: wait until every worker answers."""

from __future__ import annotations

import time

import requests


def wait_for_workers(url: str, count: int = 2) -> set[int]:
    """The pids of ``count`` workers, each seen answering the app's ``pid`` workflow.

    The port answers once the first worker listens; the others may bind a moment later. Each
    probe is a new connection (``Connection: close``), so the kernel spreads them over the workers.
    """
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < count and time.monotonic() < deadline:
        resp = requests.post(
            f"{url}/workflows/pid/execute", json={}, headers={"Connection": "close"}, timeout=10
        )
        pids.add(resp.json()["result"])
    assert len(pids) == count
    return pids
