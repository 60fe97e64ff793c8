"""The spec's two Python client examples, verbatim but for the base URL and workflow names,
against a live server (issue 2 acceptance)."""

from __future__ import annotations

import asyncio

import aiohttp
import requests

from nexus_aio.testing import make_app


# fmt: off
# --- the spec's "Using Requests" client, unchanged -------------------------------------------
class NexusClient:
    def __init__(self, base_url="http://localhost:8000"):
        self.base_url = base_url
        self.session = requests.Session()

    def execute_workflow(self, workflow_name, inputs, session_id=None):
        url = f"{self.base_url}/workflows/{workflow_name}/execute"

        headers = {"Content-Type": "application/json"}
        if session_id:
            headers["X-Session-ID"] = session_id

        response = self.session.post(
            url,
            json={"inputs": inputs},
            headers=headers
        )

        response.raise_for_status()
        return response.json()

    def get_schema(self, workflow_name):
        url = f"{self.base_url}/workflows/{workflow_name}/schema"
        response = self.session.get(url)
        response.raise_for_status()
        return response.json()

    def list_workflows(self):
        url = f"{self.base_url}/workflows"
        response = self.session.get(url)
        response.raise_for_status()
        return response.json()


# --- the spec's "Async Client", unchanged ----------------------------------------------------
class AsyncNexusClient:
    def __init__(self, base_url="http://localhost:8000"):
        self.base_url = base_url

    async def execute_workflow(self, workflow_name, inputs):
        url = f"{self.base_url}/workflows/{workflow_name}/execute"

        async with aiohttp.ClientSession() as session:
            async with session.post(
                url,
                json={"inputs": inputs}
            ) as response:
                return await response.json()

    async def execute_many(self, workflows):
        tasks = [
            self.execute_workflow(wf["name"], wf["inputs"])
            for wf in workflows
        ]
        return await asyncio.gather(*tasks)
# fmt: on


def test_spec_requests_client_example(nexus_thread_server):
    client = NexusClient(nexus_thread_server(make_app()))
    result = client.execute_workflow("echo", {"param": "value"})
    assert result["success"] is True and result["result"] == {"param": "value"}
    assert client.get_schema("echo")["inputs"]["param"]["type"] == "string"
    assert "echo" in client.list_workflows()
    first = client.execute_workflow("counter", {}, session_id="session-123")
    second = client.execute_workflow("counter", {}, session_id="session-123")
    assert (first["result"], second["result"]) == (1, 2)


async def test_spec_async_client_example(nexus_server):
    client = AsyncNexusClient(await nexus_server(make_app()))
    results = await client.execute_many(
        [
            {"name": "echo", "inputs": {"param": "val1"}},
            {"name": "greet", "inputs": {"name": "val2"}},
        ]
    )
    assert [r["success"] for r in results] == [True, True]
    assert results[0]["result"] == {"param": "val1"}
    assert results[1]["result"] == {"message": "Hello, val2!"}
