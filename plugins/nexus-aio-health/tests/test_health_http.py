"""The health probes and components over real HTTP, with thresholds set to flip them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from nexus_aio_health import HEALTH_STATE, SETTINGS

from nexus_aio.errors import ConfigurationError, StoreUnavailable
from nexus_aio.settings import Settings
from nexus_aio.testing import make_app


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def test_plugin_is_listed_by_get_plugins_with_version_and_hooks(nexus_server, http):
    url = await nexus_server(make_app())
    _, body = await get(http, f"{url}/plugins")
    plugin = next(p for p in body["plugins"] if p["name"] == "health")
    assert plugin["version"] == "0.1.0"
    assert plugin["hooks"] == [
        "health_components",
        "register_cleanup_ctx",
        "register_routes",
        "register_settings",
    ]
    assert plugin["builtin"] is False


async def test_health_settings_work_through_constructor_app_api_and_environment(
    nexus_server, http, monkeypatch
):
    by_api = make_app()
    by_api.api.health_memory_unhealthy_mb = 8192
    apps = [make_app(health_memory_unhealthy_mb=8192), by_api]
    monkeypatch.setenv("NEXUS_HEALTH_MEMORY_UNHEALTHY_MB", "8192")
    apps.append(make_app())
    monkeypatch.delenv("NEXUS_HEALTH_MEMORY_UNHEALTHY_MB")
    for app in apps:
        _, body = await get(http, f"{await nexus_server(app)}/health/detailed")
        assert body["components"]["memory"]["thresholds"] == {"degraded": 1024, "unhealthy": 8192}


def test_health_settings_are_type_checked():
    with pytest.raises(ConfigurationError, match="health_memory_unhealthy_mb must be a number"):
        make_app(health_memory_unhealthy_mb="lots")
    with pytest.raises(ConfigurationError, match="NEXUS_HEALTH_LOOP_LAG_DEGRADED='x'"):
        Settings.build({}, {"NEXUS_HEALTH_LOOP_LAG_DEGRADED": "x"}, declared=SETTINGS)


async def test_live_probe_answers_alive(nexus_server, http):
    url = await nexus_server(make_app())
    assert await get(http, f"{url}/health/live") == (200, {"status": "alive"})


async def test_ready_probe_is_200_with_every_component_when_healthy(nexus_server, http):
    url = await nexus_server(make_app())
    status, body = await get(http, f"{url}/health/ready")
    assert status == 200
    assert body["ready"] is True and body["status"] == "healthy"
    assert {"event_loop", "memory", "disk", "stores", "api", "database"} <= set(body["components"])


async def test_detailed_health_shows_the_plugin_components(nexus_server, http):
    url = await nexus_server(make_app())
    status, body = await get(http, f"{url}/health/detailed")
    assert status == 200
    components = body["components"]
    assert components["memory"]["rss_mb"] > 0
    assert components["stores"]["stores"]["executions"]["reachable"] is True
    assert components["stores"]["stores"]["sessions"]["backend"] == "MemorySessionStore"
    assert components["disk"]["path"] is None  # in-memory database: no disk to watch


async def test_memory_over_the_unhealthy_threshold_makes_ready_503(nexus_server, http):
    url = await nexus_server(make_app(health_memory_unhealthy_mb=1))
    status, body = await get(http, f"{url}/health/ready")
    assert status == 503
    assert body["ready"] is False and body["status"] == "unhealthy"
    assert body["components"]["memory"]["status"] == "unhealthy"
    assert body["reason"] == "unhealthy: memory"
    status, detailed = await get(http, f"{url}/health/detailed")
    assert detailed["status"] == "unhealthy"
    assert (await get(http, f"{url}/health/live"))[0] == 200  # alive all the same


async def test_memory_over_the_degraded_threshold_is_degraded_but_ready(nexus_server, http):
    url = await nexus_server(make_app(health_memory_degraded_mb=1, health_memory_unhealthy_mb=0))
    status, body = await get(http, f"{url}/health/ready")
    assert status == 200
    assert body["status"] == "degraded"
    assert body["components"]["memory"]["thresholds"] == {"degraded": 1.0, "unhealthy": None}


async def test_disk_component_watches_the_database_directory(nexus_server, http, tmp_path):
    db = tmp_path / "data" / "nexus.db"
    app = make_app(database=str(db), health_disk_degraded_free_mb=10**12)
    url = await nexus_server(app)
    status, body = await get(http, f"{url}/health/ready")
    disk = body["components"]["disk"]
    assert disk["path"] == str(db.parent)
    assert disk["status"] == "degraded" and status == 200
    assert 0 < disk["free_percent"] <= 100


async def test_disk_below_the_unhealthy_free_percent_makes_ready_503(nexus_server, http, tmp_path):
    app = make_app(database=str(tmp_path / "n.db"), health_disk_unhealthy_free_percent=100)
    url = await nexus_server(app)
    status, body = await get(http, f"{url}/health/ready")
    assert status == 503
    assert body["components"]["disk"]["status"] == "unhealthy"


async def test_event_loop_lag_over_thresholds_flips_the_component(nexus_server, http):
    app = make_app(health_loop_lag_degraded=0.2, health_loop_lag_unhealthy=0.5)
    url = await nexus_server(app)
    monitor = app.app[HEALTH_STATE].monitor
    monitor.samples.clear()
    monitor.record(0.3)
    status, body = await get(http, f"{url}/health/ready")
    assert (status, body["components"]["event_loop"]["status"]) == (200, "degraded")
    assert body["components"]["event_loop"]["max_lag_seconds"] == 0.3
    monitor.record(0.7)
    status, body = await get(http, f"{url}/health/ready")
    assert (status, body["components"]["event_loop"]["status"]) == (503, "unhealthy")


async def test_an_unreachable_store_makes_ready_503_and_is_named(nexus_server, http, monkeypatch):
    app = make_app()
    url = await nexus_server(app)

    async def down() -> None:
        raise StoreUnavailable("sessions store is down")

    monkeypatch.setattr(app.service.sessions, "ping", down)
    status, body = await get(http, f"{url}/health/ready")
    assert status == 503
    stores = body["components"]["stores"]
    assert stores["stores"]["sessions"] == {
        "status": "unhealthy",
        "reachable": False,
        "error": "sessions store is down",
        "backend": "MemorySessionStore",
    }
    assert stores["stores"]["executions"]["status"] == "healthy"


async def test_ready_is_503_once_shutdown_has_begun(nexus_server, http):
    app = make_app()
    url = await nexus_server(app)
    assert (await get(http, f"{url}/health/ready"))[0] == 200
    await app.app.shutdown()  # what aiohttp runs when the server starts to drain
    status, body = await get(http, f"{url}/health/ready")
    assert status == 503
    assert body["reason"] == "shutting down"
    assert body["status"] == "healthy"  # nothing is wrong: it is just leaving


async def test_probes_live_under_the_api_prefix(nexus_server, http):
    url = await nexus_server(make_app(api_prefix="/api"))
    assert url.endswith("/api")
    assert (await get(http, f"{url}/health/live"))[0] == 200
    assert (await get(http, f"{url}/health/ready"))[0] == 200
