"""An MCP tool call runs through the same runtime as HTTP: the workflow's retry policy applies."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from conftest import mcp_session

from nexus_aio.testing import ServerProcess

APP = """
from pathlib import Path

from nexus_aio import Nexus, RetryPolicy

app = Nexus(enable_mcp=True)


@app.workflow(retry=RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=False))
def flaky() -> int:
    tries = Path("tries")
    n = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(n))
    if n < 3:
        raise ConnectionError(f"down {n}")
    return n
"""


async def test_a_tool_call_is_retried_by_its_workflows_policy(tmp_path: Path) -> None:
    (tmp_path / "retry_mcp_app.py").write_text(APP)
    with ServerProcess(["serve", "--app", "retry_mcp_app:app"], cwd=tmp_path) as server:
        async with mcp_session(server.url) as mcp:
            result = await mcp.call_tool("flaky", {})
        assert result.is_error is False
        envelope = json.loads(result.content[0].text)
        assert envelope["result"] == 3 and (tmp_path / "tries").read_text() == "3"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.url}/executions/{envelope['workflow_id']}") as resp,
        ):
            assert (await resp.json())["attempts"] == 3
