"""Memory and disk stay bounded under hostile traffic: the behaviours, through a real server."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import httpx
import pytest

from nexus_aio.testing import ServerProcess

APP = textwrap.dedent(
    """
    from nexus_aio import Context, Nexus

    app = Nexus(load_entry_points=False)


    @app.workflow("echo")
    def echo(text: str) -> dict:
        return {"text": text}


    @app.workflow("count")
    async def count(ctx: Context) -> int:
        ctx.session["n"] = ctx.session.get("n", 0) + 1
        return ctx.session["n"]
    """
)

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def settled_rss(pid: int, deadline: float = 15.0) -> int:
    """RSS once it stops moving (the write-behind store finishes serialising what the runs left
    behind): two readings 0.2 s apart within 1 MB of each other."""
    end = time.monotonic() + deadline
    last = rss_bytes(pid)
    while time.monotonic() < end:
        time.sleep(0.2)
        now = rss_bytes(pid)
        if abs(now - last) < MB:
            return now
        last = now
    raise AssertionError(f"RSS of {pid} still moving after {deadline} s")


def serve(tmp_path: Path, database: str, **env: str) -> ServerProcess:
    (tmp_path / "boundsapp.py").write_text(APP)
    environ = {"NEXUS_DATABASE": database, "PYTHONPATH": str(tmp_path), **env}
    return ServerProcess(["serve", "--app", "boundsapp:app"], cwd=tmp_path, env=environ)


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_execution_list_pages_stay_small_while_huge_records_stay_whole(
    tmp_path: Path, store: str
) -> None:
    """20 runs with ~1 MB inputs and results: a list page is a few KB (each item names what it
    left out), the server's memory does not grow with listing, and each record is still whole
    at ``GET /executions/{id}``."""
    database = str(tmp_path / "nexus.db") if store == "sqlite" else ":memory:"
    with serve(tmp_path, database) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        ids = []
        for n in range(20):
            text = f"{n:02d}" + "x" * (MB - 2)
            resp = c.post("/workflows/echo/execute", json={"inputs": {"text": text}})
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["workflow_id"])
        c.get("/executions", params={"limit": 50})  # warm up the route and the store
        before = settled_rss(server.proc.pid)
        for _ in range(5):
            resp = c.get("/executions", params={"limit": 50})
            assert resp.status_code == 200
            assert len(resp.content) < 20 * 1024, len(resp.content)
        grown = rss_bytes(server.proc.pid) - before
        assert grown < 16 * MB, f"RSS grew by {grown / MB:.1f} MB over five list calls"

        page = resp.json()["executions"]
        assert sorted(item["id"] for item in page) == sorted(ids)
        for item in page:
            assert item["status"] == "succeeded"
            assert item["inputs"] is None and item["result"] is None
            assert item["truncated"] == ["inputs", "result"]

        record = c.get(f"/executions/{ids[7]}").json()
        assert record["inputs"]["text"] == "07" + "x" * (MB - 2)
        assert record["result"] == {"text": record["inputs"]["text"]}
        assert "truncated" not in record

        small = c.post("/workflows/echo/execute", json={"inputs": {"text": "hi"}}).json()[
            "workflow_id"
        ]
        first = c.get("/executions", params={"limit": 1}).json()["executions"][0]
        assert first["id"] == small
        assert first["inputs"] == {"text": "hi"} and first["result"] == {"text": "hi"}
        assert "truncated" not in first


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_a_new_session_beyond_max_sessions_is_503_with_retry_after(
    tmp_path: Path, store: str
) -> None:
    """``NEXUS_MAX_SESSIONS=3``: a fourth session is refused before the workflow runs, with the
    error envelope and ``Retry-After``; existing sessions keep working, and ending one makes
    room at once."""
    database = str(tmp_path / "nexus.db") if store == "sqlite" else ":memory:"
    with (
        serve(tmp_path, database, NEXUS_MAX_SESSIONS="3") as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
    ):

        def step(session_id: str) -> httpx.Response:
            return c.post("/workflows/count/execute", json={}, headers={"X-Session-ID": session_id})

        for session_id in ("s1", "s2", "s3"):
            resp = step(session_id)
            assert resp.status_code == 200 and resp.json()["result"] == 1, resp.text
        refused = step("s4")
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        body = refused.json()
        assert body["success"] is False
        assert body["error"]["type"] == "ServiceUnavailable"
        assert body["error"]["details"] == {"max_sessions": 3}
        assert c.get("/sessions/s4").status_code == 404  # nothing was created

        again = step("s1")
        assert again.status_code == 200 and again.json()["result"] == 2
        assert c.delete("/sessions/s2").status_code == 204
        now = step("s4")
        assert now.status_code == 200 and now.json()["result"] == 1
        assert step("s5").status_code == 503


def test_memory_store_keeps_only_what_fits_its_byte_bound(tmp_path: Path) -> None:
    """``database=":memory:"`` with ``memory_executions_max_bytes`` of 5 MB: runs with ~1 MB
    inputs and results keep only the newest records, and the server's memory stops growing."""
    env = {"NEXUS_MEMORY_EXECUTIONS_MAX_BYTES": str(5 * MB)}
    with (
        serve(tmp_path, ":memory:", **env) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):

        def run(n: int) -> str:
            resp = c.post(
                "/workflows/echo/execute", json={"inputs": {"text": f"{n:03d}" + "x" * MB}}
            )
            assert resp.status_code == 200, resp.text
            return str(resp.json()["workflow_id"])

        ids = [run(n) for n in range(30)]  # allocator pools warm: later growth is the store's
        first = settled_rss(server.proc.pid)
        ids += [run(n) for n in range(30, 70)]
        grown = settled_rss(server.proc.pid) - first
        # Unbounded, the 40 more runs (2 MB each: inputs and result) would add ~80 MB.
        assert grown < 40 * MB, f"RSS grew by {grown / MB:.1f} MB for 40 more 2 MB records"
        held = [i["id"] for i in c.get("/executions", params={"limit": 500}).json()["executions"]]
        assert held == ids[::-1][: len(held)] and 1 <= len(held) <= 2
        assert c.get(f"/executions/{ids[0]}").status_code == 404
