"""``nexus_aio.testing`` reaches a plugin author's tests through the ``pytest11`` entry point.

The inner test session runs in a subprocess with no conftest and no ``-p`` option, so the
fixtures can only come from the installed entry point.
"""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

PLUGIN_TEST = """
import aiohttp
import requests

from nexus_aio import Nexus, hookimpl


class Greeter:
    @hookimpl
    def register_workflows(self, nexus):
        return [("greet", lambda name: f"hi {name}")]


def make_app():
    return Nexus(database=":memory:", plugins=[Greeter()], load_entry_points=False)


async def test_async_fixture_serves_the_plugin(nexus_server):
    url = await nexus_server(make_app())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/workflows/greet/execute", json={"inputs": {"name": "a"}}) as r:
            assert r.status == 200
            assert (await r.json())["result"] == "hi a"
        async with http.get(f"{url}/plugins") as r:
            names = [p["name"] for p in (await r.json())["plugins"]]
            assert any(n.startswith("Greeter") for n in names)


def test_thread_fixture_serves_the_plugin(nexus_thread_server):
    url = nexus_thread_server(make_app())
    r = requests.post(f"{url}/workflows/greet/execute", json={"inputs": {"name": "b"}})
    assert r.status_code == 200 and r.json()["result"] == "hi b"
"""


def test_pytest11_entry_point_names_nexus_aio_testing():
    points = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.value == "nexus_aio.testing" for ep in points)


def test_plugin_authors_tests_get_the_server_fixtures(pytester: pytest.Pytester):
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_my_plugin=PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
