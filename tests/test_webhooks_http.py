"""Completion webhooks over real HTTP: signed deliveries to a real local receiver, retries,
the SSRF guard, durability across a SIGKILL, and one delivery per run across workers."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from nexus_aio.errors import ConfigurationError
from nexus_aio.testing import ServerProcess, http_receiver, make_app
from nexus_aio.web.webhooks import GuardedResolver, RefusedTarget

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
LOCAL = {"webhook_secret": SECRET, "webhook_allowed_hosts": ["127.0.0.1"]}


@dataclass
class Receiver:
    """A real HTTP endpoint on loopback that answers ``statuses`` in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)

    def verified(self, index: int = -1) -> dict[str, Any]:
        headers, body = self.calls[index]
        payload: dict[str, Any] = Webhook(SECRET).verify(body, headers)
        return payload

    async def wait_for(self, count: int, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"{len(self.calls)} of {count} deliveries"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.5)
            except TimeoutError:
                pass


@pytest.fixture
async def receiver():
    recv = Receiver()
    async with http_receiver(recv.handle) as recv.url:
        yield recv


async def execute(http, url, body):
    async with http.post(f"{url}/workflows/{body.pop('wf', 'sum')}/execute", json=body) as resp:
        return resp.status, await resp.json()


async def record_of(http, url, execution_id):
    async with http.get(f"{url}/executions/{execution_id}?wait=10") as resp:
        return await resp.json()


async def wait_webhook_state(http, url, execution_id, state, within=15.0):
    deadline = time.monotonic() + within
    while True:
        record = await record_of(http, url, execution_id)
        if record.get("webhook", {}).get("state") == state:
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.05)


async def test_an_async_run_posts_its_signed_final_record(nexus_server, http, receiver):
    url = await nexus_server(make_app(**LOCAL))
    status, data = await execute(
        http, url, {"inputs": {"a": 2, "b": 3}, "mode": "async", "webhook": receiver.url}
    )
    assert status == 202
    await receiver.wait_for(1)
    payload = receiver.verified()
    assert payload["id"] == data["workflow_id"]
    assert (payload["status"], payload["result"]) == ("succeeded", 5)
    headers = receiver.calls[0][0]
    assert headers["webhook-id"] == f"msg_{data['workflow_id']}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    record = await wait_webhook_state(http, url, data["workflow_id"], "delivered")
    assert record["webhook"]["attempts"] == 1 and record["webhook"]["last_status"] == 200


async def test_a_stream_run_delivers_when_its_stream_ends(nexus_server, http, receiver):
    url = await nexus_server(make_app(**LOCAL))
    body = {"inputs": {"start": 2}, "mode": "stream", "webhook": receiver.url}
    async with http.post(f"{url}/workflows/countdown/execute", json=body) as resp:
        assert resp.status == 200
        await resp.read()
    await receiver.wait_for(1)
    payload = receiver.verified()
    assert payload["name"] == "countdown" and payload["status"] == "succeeded"


async def test_failed_attempts_are_retried_with_the_same_id_until_accepted(
    nexus_server, http, receiver
):
    receiver.statuses = [503, 500]
    url = await nexus_server(make_app(**LOCAL, webhook_initial_delay=0.1))
    _, data = await execute(
        http, url, {"inputs": {"a": 1, "b": 1}, "mode": "async", "webhook": receiver.url}
    )
    await receiver.wait_for(3)
    ids = {headers["webhook-id"] for headers, _ in receiver.calls}
    assert ids == {f"msg_{data['workflow_id']}"}
    assert all(receiver.verified(i)["status"] == "succeeded" for i in range(3))
    record = await wait_webhook_state(http, url, data["workflow_id"], "delivered")
    assert record["webhook"]["attempts"] == 3


async def test_delivery_gives_up_after_max_attempts(nexus_server, http, receiver):
    receiver.statuses = [500] * 10
    app = make_app(**LOCAL, webhook_initial_delay=0.05, webhook_max_attempts=2)
    url = await nexus_server(app)
    _, data = await execute(
        http, url, {"inputs": {"a": 1, "b": 1}, "mode": "async", "webhook": receiver.url}
    )
    record = await wait_webhook_state(http, url, data["workflow_id"], "failed")
    assert record["webhook"]["attempts"] == 2
    assert (record["webhook"]["last_status"], record["webhook"]["last_error"]) == (500, "HTTP 500")
    assert len(receiver.calls) == 2


async def test_a_failed_run_is_delivered_too(nexus_server, http, receiver):
    url = await nexus_server(make_app(**LOCAL))
    body = {"inputs": {"message": "boom"}, "mode": "async", "webhook": receiver.url, "wf": "fail"}
    status, _ = await execute(http, url, body)
    assert status == 202
    await receiver.wait_for(1)
    payload = receiver.verified()
    assert payload["status"] == "failed" and payload["error"]["message"] == "boom"


async def test_a_webhook_without_a_configured_secret_is_a_400(nexus_server, http):
    url = await nexus_server(make_app())
    status, data = await execute(
        http, url, {"inputs": {"a": 1, "b": 1}, "mode": "async", "webhook": "https://example.com"}
    )
    assert status == 400 and "webhook_secret" in data["error"]["message"]


@pytest.mark.parametrize(
    ("mode", "webhook", "message"),
    [
        ("sync", "https://example.com/h", "async and stream"),
        ("async", 42, "webhook"),
        ("async", "ftp://example.com/h", "http"),
        ("async", "https://user:pw@example.com/h", "credentials"),
        ("async", "not a url", "http"),
    ],
)
async def test_bad_webhook_requests_are_400(nexus_server, http, mode, webhook, message):
    url = await nexus_server(make_app(webhook_secret=SECRET))
    status, data = await execute(
        http, url, {"inputs": {"a": 1, "b": 1}, "mode": mode, "webhook": webhook}
    )
    assert status == 400, data
    assert message in data["error"]["message"]
    assert data["error"]["details"]["field"] == "webhook"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:9/h",
        "http://10.0.0.7/h",
        "http://192.168.1.1/h",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8000/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://0.0.0.0/h",
        "http://localhost:8000/h",
    ],
)
async def test_non_public_targets_are_refused_at_submission(nexus_server, http, target):
    url = await nexus_server(make_app(webhook_secret=SECRET))
    status, data = await execute(
        http, url, {"inputs": {"a": 1, "b": 1}, "mode": "async", "webhook": target}
    )
    assert status == 400, data
    assert "refused" in data["error"]["message"]


async def test_the_delivery_resolver_refuses_names_of_private_addresses():
    guarded = GuardedResolver(lambda host: False)
    with pytest.raises(RefusedTarget, match="loopback"):
        await guarded.resolve("localhost", 80)
    allowed = GuardedResolver(lambda host: host == "localhost")
    assert await allowed.resolve("localhost", 80)
    await guarded.close()
    await allowed.close()


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("secret", "whsec_"),
        ("whsec_%%%", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 24"),
    ],
)
def test_a_malformed_secret_stops_startup(secret, message):
    with pytest.raises(ConfigurationError, match=message):
        make_app(webhook_secret=secret).create_app()


# -- real processes ---------------------------------------------------------------------------
@pytest.fixture
def thread_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]], list[int]]]:
    """A receiver in a thread (for tests driving server processes synchronously); answer codes
    are taken from the returned list (200 when empty)."""
    calls: list[tuple[dict[str, str], bytes]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", calls, statuses
    server.shutdown()
    thread.join()
    server.server_close()


def submit(url: str, workflow: str, inputs: dict[str, Any], hook: str) -> str:
    resp = requests.post(
        f"{url}/workflows/{workflow}/execute",
        json={"inputs": inputs, "mode": "async", "webhook": hook},
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    execution_id: str = resp.json()["workflow_id"]
    return execution_id


def poll(condition, within=20.0, what="condition"):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def server_env(tmp_path, **extra: str) -> dict[str, str]:
    return {
        "NEXUS_DATABASE": str(tmp_path / "nexus.db"),
        "NEXUS_WEBHOOK_SECRET": SECRET,
        "NEXUS_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        **extra,
    }


def test_pending_deliveries_survive_a_sigkill_and_restart(tmp_path, thread_receiver):
    hook, calls, statuses = thread_receiver
    statuses.extend([503] * 1000)  # refuse everything until the server is killed
    env = server_env(tmp_path, NEXUS_WEBHOOK_INITIAL_DELAY="0.2")
    with ServerProcess(["serve"], cwd=tmp_path, env=env) as server:
        done = submit(server.url, "sum", {"a": 1, "b": 2}, hook)
        cut = submit(server.url, "slow", {"seconds": 30}, hook)
        poll(lambda: len(calls) >= 1, what="a first (refused) attempt")
        poll(
            lambda: (
                requests.get(f"{server.url}/executions/{cut}", timeout=5).json()["status"]
                == "running"
            ),
            what="the slow run to start",
        )
        server.stop(signal.SIGKILL)
    statuses.clear()  # the receiver accepts from now on
    calls.clear()
    with ServerProcess(["serve"], cwd=tmp_path, env=env) as server:
        poll(lambda: len({h["webhook-id"] for h, _ in calls}) >= 2, what="both deliveries")
        payloads = {
            p["id"]: p for p in (Webhook(SECRET).verify(body, headers) for headers, body in calls)
        }
        assert payloads[done]["status"] == "succeeded" and payloads[done]["result"] == 3
        assert payloads[cut]["status"] == "interrupted"
        record = requests.get(f"{server.url}/executions/{done}", timeout=5).json()
        assert record["webhook"]["state"] == "delivered" and record["webhook"]["attempts"] >= 2


def test_each_run_is_delivered_once_across_workers(tmp_path, thread_receiver):
    hook, calls, _ = thread_receiver
    env = server_env(tmp_path)
    with ServerProcess(["serve", "--workers", "2"], cwd=tmp_path, env=env) as server:
        ids = [submit(server.url, "sum", {"a": i, "b": 1}, hook) for i in range(20)]
        poll(lambda: len(calls) >= 20, what="20 deliveries")
        for execution_id in ids:
            poll(
                lambda eid=execution_id: (
                    requests.get(f"{server.url}/executions/{eid}", timeout=5).json()["webhook"][
                        "state"
                    ]
                    == "delivered"
                ),
                what=f"{execution_id} delivered",
            )
    webhook_ids = [headers["webhook-id"] for headers, _ in calls]
    assert sorted(webhook_ids) == sorted(f"msg_{i}" for i in ids)
    assert json.loads(calls[0][1])["status"] == "succeeded"  # delivered rows are never re-sent


async def test_hook_webhook_attempted(nexus_server, http, receiver):
    from nexus_aio import hookimpl

    seen: list[tuple[str, str, int, int | None, str]] = []

    class Plugin:
        @hookimpl
        def webhook_attempted(self, nexus, delivery, execution, started_at, finished_at):
            assert started_at <= finished_at
            seen.append(
                (
                    delivery.execution_id,
                    delivery.state,
                    delivery.attempts,
                    delivery.last_status,
                    execution.status,
                )
            )

    receiver.statuses = [500]
    app = make_app(**LOCAL, webhook_initial_delay=0.05)
    app.pm.register(Plugin())
    url = await nexus_server(app)
    _, data = await execute(
        http, url, {"inputs": {"a": 1, "b": 1}, "mode": "async", "webhook": receiver.url}
    )
    await wait_webhook_state(http, url, data["workflow_id"], "delivered")
    assert seen == [
        (data["workflow_id"], "pending", 1, 500, "succeeded"),
        (data["workflow_id"], "delivered", 2, 200, "succeeded"),
    ]
