"""The ``executor`` hook and the Executor protocol: where async runs wait and run."""

from __future__ import annotations

import asyncio
from typing import Any

from nexus_aio import Nexus, hookimpl
from nexus_aio.execution.executor import Executor, LocalExecutor


class RecordingExecutor(LocalExecutor):
    """The in-process executor, remembering what it was given."""

    def __init__(self, runtime: Any, max_queued: int) -> None:
        super().__init__(runtime, max_queued)
        self.submitted: list[str] = []

    async def submit(self, sub: Any) -> Any:
        self.submitted.append(sub.execution_id)
        return await super().submit(sub)


async def test_hook_executor(nexus_server, http):
    made: list[RecordingExecutor] = []

    class Undecided:
        __name__ = "undecided"

        @hookimpl(tryfirst=True)
        async def executor(self, nexus):  # asked first, answers None: must not hide the next
            await asyncio.sleep(0)
            return None

    class Recording:
        __name__ = "recording"

        @hookimpl
        def executor(self, nexus, service):
            made.append(RecordingExecutor(service.runtime, 5))
            return made[0]

    app = Nexus(database=":memory:", plugins=[Recording(), Undecided()])

    @app.workflow()
    async def add(a: int, b: int) -> int:
        return a + b

    url = await nexus_server(app)
    assert isinstance(made[0], Executor)
    async with http.post(
        f"{url}/workflows/add/execute", json={"inputs": {"a": 2, "b": 3}, "mode": "async"}
    ) as resp:
        assert resp.status == 202
        execution_id = (await resp.json())["workflow_id"]
    assert made[0].submitted == [execution_id]
    async with http.get(f"{url}/executions/{execution_id}", params={"wait": "5"}) as resp:
        record = await resp.json()
    assert (record["status"], record["result"]) == ("succeeded", 5)
    async with http.post(f"{url}/workflows/add/execute", json={"inputs": {"a": 1, "b": 1}}) as r:
        assert (await r.json())["result"] == 2  # sync runs do not go through the executor
    assert len(made[0].submitted) == 1
