"""Settings: constructor > NEXUS_* environment > defaults; app.api.* tuning."""

from __future__ import annotations

import pytest

from nexus_aio import Nexus
from nexus_aio.errors import ConfigurationError
from nexus_aio.settings import Settings


def test_defaults_match_the_spec():
    s = Settings.build({}, {})
    assert (s.api_port, s.api_host, s.api_prefix) == (8000, "127.0.0.1", "")
    assert s.enable_docs is True and s.enable_cors is False
    assert s.request_timeout == 30 and s.max_concurrent_requests == 100
    assert s.max_request_size == 10 * 1024 * 1024
    assert s.rate_limit is None and s.rate_limit_burst is None


def test_environment_overrides_defaults_and_constructor_wins():
    env = {
        "NEXUS_REQUEST_TIMEOUT": "5",
        "NEXUS_API_PREFIX": "/api/v1",
        "NEXUS_API_PORT": "9000",
        "NEXUS_ENABLE_CORS": "true",
        "NEXUS_CORS_ORIGINS": "https://a.example,https://b.example",
        "NEXUS_RATE_LIMIT": "1000",
    }
    s = Settings.build({"api_port": 8100}, env)
    assert s.request_timeout == 5.0
    assert s.api_prefix == "/api/v1"
    assert s.api_port == 8100
    assert s.enable_cors is True
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.rate_limit == 1000


def test_bad_environment_values_fail_clearly():
    with pytest.raises(ConfigurationError, match="NEXUS_API_PORT"):
        Settings.build({}, {"NEXUS_API_PORT": "eighty"})
    with pytest.raises(ConfigurationError, match="api_prefix"):
        Settings.build({"api_prefix": "api"}, {})


def test_app_api_attributes_tune_the_app(monkeypatch):
    monkeypatch.delenv("NEXUS_REQUEST_TIMEOUT", raising=False)
    app = Nexus(api_port=8000, api_host="0.0.0.0", enable_docs=True, enable_cors=True)
    app.api.response_compression = True
    app.api.request_timeout = 30
    app.api.max_concurrent_requests = 100
    app.api.max_request_size = 10 * 1024 * 1024
    app.api.cors_enabled = True
    app.api.cors_origins = ["https://example.com", "https://app.example.com"]
    assert app.settings.response_compression is True
    assert app.settings.enable_cors is True
    assert app.settings.cors_origins == ["https://example.com", "https://app.example.com"]


def test_settings_freeze_when_the_app_is_built():
    app = Nexus(database=":memory:")
    app.create_app()
    with pytest.raises(ConfigurationError, match="frozen"):
        app.api.request_timeout = 1


def test_plugin_settings_come_from_kwargs_or_environment(monkeypatch):
    monkeypatch.setenv("NEXUS_AUTH_API_KEYS", "k1,k2")
    app = Nexus(database=":memory:", redis_url="redis://x")
    assert app.settings.get("redis_url") == "redis://x"
    assert app.settings.get("auth_api_keys", type=list) == ["k1", "k2"]
    assert app.settings.get("missing", 7) == 7
