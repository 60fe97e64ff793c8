"""The spec's client *usage* code, unchanged but for base URL and workflow names, runs with
``nexus_aio.client``'s classes: they are drop-in replacements for the spec's example classes
(which ``test_spec_client_examples.py`` runs verbatim) and give the same answers."""

from __future__ import annotations

from nexus_aio.client import AsyncNexusClient, NexusClient
from nexus_aio.testing import make_app


def test_spec_requests_usage_with_nexus_client(nexus_thread_server):
    base_url = nexus_thread_server(make_app())
    # --- the spec's usage, unchanged but for the URL and the workflow name ---
    client = NexusClient(base_url)
    result = client.execute_workflow("echo", {"param": "value"})
    print(result)
    # --- the spec's other methods and the session header ---
    assert result["success"] is True and result["result"] == {"param": "value"}
    assert client.get_schema("echo")["inputs"]["param"]["type"] == "string"
    assert "echo" in client.list_workflows()
    first = client.execute_workflow("counter", {}, session_id="session-123")
    second = client.execute_workflow("counter", {}, session_id="session-123")
    assert (first["result"], second["result"]) == (1, 2)
    client.close()


async def test_spec_async_usage_with_async_nexus_client(nexus_server):
    base_url = await nexus_server(make_app())
    # --- the spec's usage (``main``), unchanged but for the URL and the workflow names ---
    client = AsyncNexusClient(base_url)
    results = await client.execute_many([
        {"name": "echo", "inputs": {"param": "val1"}},
        {"name": "greet", "inputs": {"name": "val2"}}
    ])  # fmt: skip
    print(results)
    # ---
    assert [r["success"] for r in results] == [True, True]
    assert results[0]["result"] == {"param": "val1"}
    assert results[1]["result"] == {"message": "Hello, val2!"}
    await client.aclose()
