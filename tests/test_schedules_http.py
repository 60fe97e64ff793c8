"""Schedules over real HTTP: create, fire on time, pause, resume, delete; declared schedules;
the catchup policy; 400s at creation; one run per tick across ``--workers`` processes."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime

import pytest
import requests

from nexus_aio import Context, Nexus
from nexus_aio.testing import ServerProcess, http_receiver, make_app
from nexus_aio.web.schedules import SCHEDULER


async def post(http, url, path, body):
    async with http.post(url + path, json=body) as resp:
        return resp.status, await resp.json()


async def get(http, url, path):
    async with http.get(url + path) as resp:
        return resp.status, (await resp.json() if resp.status != 204 else None)


async def wait_for(predicate, within=15.0):
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def scheduled_runs(http, url, schedule_id):
    _, page = await get(http, url, "/executions?limit=500")
    return [r for r in page["executions"] if r.get("schedule_id") == schedule_id]


async def test_an_every_schedule_fires_ordinary_async_runs(nexus_server, http):
    url = await nexus_server(make_app())
    status, created = await post(
        http, url, "/schedules", {"workflow": "sum", "inputs": {"a": 2, "b": 3}, "every": 1}
    )
    assert status == 201, created
    assert created["id"].startswith("sch-") and created["next_run"]
    due = datetime.fromisoformat(created["next_run"].replace("Z", "+00:00")).timestamp()
    made = datetime.fromisoformat(created["created_at"].replace("Z", "+00:00")).timestamp()
    assert 0.9 <= due - made <= 1.1  # every 1 s: the first tick one interval after creation

    async def fired():
        _, schedule = await get(http, url, f"/schedules/{created['id']}")
        return schedule["last_execution_id"]

    execution_id = await wait_for(fired)
    _, record = await get(http, url, f"/executions/{execution_id}?wait=10")
    assert (record["status"], record["result"], record["mode"]) == ("succeeded", 5, "async")
    assert (record["trigger"], record["schedule_id"]) == ("schedule", created["id"])
    first = min(
        datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp()
        for r in await scheduled_runs(http, url, created["id"])
    )
    assert due - 0.05 <= first <= due + 0.5  # the first tick fired on time


async def test_a_seconds_cron_fires_every_second_and_stops_when_deleted(nexus_server, http):
    url = await nexus_server(make_app())
    _, created = await post(
        http,
        url,
        "/schedules",
        {"workflow": "sum", "inputs": {"a": 1, "b": 1}, "cron": "* * * * * *"},
    )
    await wait_for(lambda: _count_at_least(http, url, created["id"], 2))
    status, _ = await get_delete(http, url, f"/schedules/{created['id']}")
    assert status == 204
    settled = len(await scheduled_runs(http, url, created["id"]))
    await asyncio.sleep(2.5)  # two more ticks would have fired by now
    assert len(await scheduled_runs(http, url, created["id"])) == settled
    status, body = await get(http, url, f"/schedules/{created['id']}")
    assert status == 404 and body["error"]["type"] == "ScheduleNotFound"


async def _count_at_least(http, url, schedule_id, n):
    return len(await scheduled_runs(http, url, schedule_id)) >= n


async def get_delete(http, url, path):
    async with http.delete(url + path) as resp:
        return resp.status, await resp.read()


async def test_list_get_and_patch_pause_and_resume(nexus_server, http):
    url = await nexus_server(make_app())
    _, created = await post(
        http, url, "/schedules", {"workflow": "sum", "inputs": {"a": 1, "b": 2}, "every": 3600}
    )
    status, listing = await get(http, url, "/schedules")
    assert status == 200 and [s["id"] for s in listing["schedules"]] == [created["id"]]
    async with http.patch(f"{url}/schedules/{created['id']}", json={"paused": True}) as resp:
        paused = await resp.json()
    assert resp.status == 200 and paused["paused"] is True and paused["next_run"] is None
    async with http.patch(
        f"{url}/schedules/{created['id']}", json={"paused": False, "every": 1}
    ) as resp:
        resumed = await resp.json()
    assert resumed["paused"] is False and resumed["every"] == 1 and resumed["next_run"]
    await wait_for(lambda: _count_at_least(http, url, created["id"], 1))


async def test_a_paused_schedule_does_not_fire(nexus_server, http):
    url = await nexus_server(make_app())
    _, created = await post(
        http,
        url,
        "/schedules",
        {"workflow": "sum", "inputs": {"a": 1, "b": 2}, "every": 1, "paused": True},
    )
    assert created["paused"] is True
    await asyncio.sleep(2.2)  # two ticks' worth
    assert await scheduled_runs(http, url, created["id"]) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": "nope", "every": 5}, "workflow"),
        ({"every": 5}, "workflow"),
        ({"workflow": "sum", "inputs": {"a": "x", "b": 1}, "every": 5}, "a"),
        ({"workflow": "sum", "inputs": {"a": 1}, "every": 5}, "b"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "cron": "61 * * * *"}, "cron"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "cron": "* * *"}, "cron"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}}, "cron"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "cron": "* * * * *", "every": 5}, "cron"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "every": 0.5}, "every"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "every": "5"}, "every"),
        (
            {"workflow": "sum", "inputs": {"a": 1, "b": 1}, "every": 5, "timezone": "Mars/Base"},
            "timezone",
        ),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "every": 5, "catchup": "all"}, "catchup"),
        ({"workflow": "sum", "inputs": {"a": 1, "b": 1}, "every": 5, "colour": "red"}, "colour"),
    ],
)
async def test_bad_schedules_are_400_at_creation(nexus_server, http, body, field):
    url = await nexus_server(make_app())
    status, data = await post(http, url, "/schedules", body)
    assert status == 400, data
    assert data["error"]["details"]["field"] == field, data
    assert (await get(http, url, "/schedules"))[1]["schedules"] == []


async def test_a_cron_schedule_in_a_time_zone_names_its_next_tick(nexus_server, http):
    url = await nexus_server(make_app())
    status, created = await post(
        http,
        url,
        "/schedules",
        {
            "workflow": "sum",
            "inputs": {"a": 1, "b": 1},
            "cron": "30 9 * * *",
            "timezone": "Asia/Kolkata",
        },
    )
    assert status == 201
    nxt = datetime.fromisoformat(created["next_run"].replace("Z", "+00:00"))
    assert (nxt.hour, nxt.minute) == (4, 0)  # 09:30 IST is 04:00 UTC


async def test_a_declared_schedule_is_listed_and_fires(nexus_server, http):
    app = make_app()
    hits: list[str] = []

    async def beat(ctx: Context) -> str:
        hits.append(ctx.execution_id)
        return "ok"

    app.register("beat", beat, schedule="* * * * * *")
    url = await nexus_server(app)
    _, listing = await get(http, url, "/schedules")
    (declared,) = listing["schedules"]
    assert (declared["id"], declared["declared"], declared["cron"]) == (
        "sch-decl-beat",
        True,
        "* * * * * *",
    )
    await wait_for(lambda: _count_at_least(http, url, "sch-decl-beat", 1))


def test_a_declared_schedule_needs_a_valid_cron_and_no_required_inputs():
    from nexus_aio.errors import RegistrationError

    app = Nexus(database=":memory:")

    async def needs(x: int) -> int:
        return x

    with pytest.raises(RegistrationError, match="without inputs"):
        app.register("needs", needs, schedule="* * * * *")
    with pytest.raises(RegistrationError, match="cron"):
        app.register("bad", lambda: 1, schedule="not cron")


@pytest.mark.parametrize(("catchup", "runs"), [("skip", 0), ("one", 1)])
async def test_missed_ticks_follow_the_catchup_policy(nexus_server, http, catchup, runs):
    app = make_app()
    url = await nexus_server(app)
    _, created = await post(
        http, url, "/schedules",
        {"workflow": "sum", "inputs": {"a": 1, "b": 1}, "every": 3600, "catchup": catchup},
    )  # fmt: skip
    scheduler = app.app[SCHEDULER]
    schedule = await scheduler.store.get(created["id"])
    schedule.next_run = time.time() - 3 * 3600  # as if the server had been down for 3 ticks
    await scheduler.store.put(schedule)
    scheduler.wake.set()

    async def moved():
        stored = await scheduler.store.get(created["id"])
        return stored.next_run > time.time()

    await wait_for(moved)
    assert len(await scheduled_runs(http, url, created["id"])) == runs


def test_each_tick_fires_once_across_workers(tmp_path):
    (tmp_path / "tickapp.py").write_text(
        "from nexus_aio import Context, Nexus\n"
        "app = Nexus()\n\n"
        "@app.workflow()\n"
        "def tick(ctx: Context) -> str:\n"
        "    return ctx.execution_id\n"
    )
    env = {"NEXUS_DATABASE": str(tmp_path / "nexus.db")}
    with ServerProcess(
        ["serve", "--app", "tickapp:app", "--workers", "2"], cwd=tmp_path, env=env
    ) as server:
        created = requests.post(
            f"{server.url}/schedules", json={"workflow": "tick", "every": 1}, timeout=10
        ).json()
        deadline = time.monotonic() + 30
        while True:
            runs = [
                r
                for r in requests.get(
                    f"{server.url}/executions?workflow=tick&limit=500", timeout=10
                ).json()["executions"]
                if r.get("schedule_id") == created["id"]
            ]
            if len(runs) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert len(runs) >= 5
    started = sorted(
        datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp() for r in runs
    )
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert min(gaps) > 0.5, gaps  # two runs for one tick would be milliseconds apart


async def test_a_schedules_runs_are_delivered_to_its_webhook(nexus_server, http):
    import base64

    from aiohttp import web
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"w" * 32).decode()
    payloads = []

    async def hook(request):
        payloads.append(Webhook(secret).verify(await request.read(), dict(request.headers)))
        return web.Response()

    async with http_receiver(hook) as hook_url:
        url = await nexus_server(
            make_app(webhook_secret=secret, webhook_allowed_hosts=["127.0.0.1"])
        )
        status, created = await post(
            http,
            url,
            "/schedules",
            {
                "workflow": "sum",
                "inputs": {"a": 2, "b": 2},
                "every": 1,
                "webhook": hook_url,
            },
        )
        assert status == 201 and created["webhook"].endswith("/hook")

        async def delivered():
            return payloads

        (first, *_) = await wait_for(delivered)
    assert (first["status"], first["result"]) == ("succeeded", 4)
    assert (first["trigger"], first["schedule_id"]) == ("schedule", created["id"])
