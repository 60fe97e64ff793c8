"""Settings: constructor > NEXUS_* environment > defaults; app.api.* tuning; every name and type
checked; feature switches need the plugin that provides them.

These tests pass with and without the first-party plugins installed (CI runs both).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from nexus_aio import Nexus, Setting, hookimpl
from nexus_aio.errors import ConfigurationError
from nexus_aio.settings import Settings
from nexus_aio.testing import plugin_installed


def core_app(**settings: Any) -> Nexus:
    """An app with no installed plugin: only the core's settings exist."""
    return Nexus(database=":memory:", load_entry_points=False, **settings)


class Provider:
    """A third-party plugin providing ``feature`` (it declares one setting of it)."""

    def __init__(self, feature: str) -> None:
        self.feature = feature

    @hookimpl
    def register_settings(self, nexus):
        return [Setting(f"{self.feature}_realm", str, "x", feature=self.feature)]


# -- sources and precedence ----------------------------------------------------------------------
def test_defaults_match_the_spec():
    s = Settings.build({}, {})
    assert (s.api_port, s.api_host, s.api_prefix) == (8000, "127.0.0.1", "")
    assert s.enable_docs is True and s.enable_cors is False and s.enable_auth is False
    assert s.request_timeout == 30 and s.max_concurrent_requests == 100
    assert s.max_request_size == 10 * 1024 * 1024
    assert s.rate_limit is None and s.rate_limit_burst is None


def test_environment_overrides_defaults_and_constructor_wins():
    env = {
        "NEXUS_REQUEST_TIMEOUT": "5",
        "NEXUS_API_PREFIX": "/api/v1",
        "NEXUS_API_PORT": "9000",
        "NEXUS_ENABLE_CORS": "true",
        "NEXUS_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2,",
        "NEXUS_RATE_LIMIT": "1000",
        "NEXUS_RATE_LIMIT_BURST": "",
    }
    s = Settings.build({"api_port": 8100}, env)
    assert s.request_timeout == 5.0
    assert s.api_prefix == "/api/v1"
    assert s.api_port == 8100
    assert s.enable_cors is True
    assert s.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert s.rate_limit == 1000
    assert s.rate_limit_burst is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(v, True) for v in ("1", "true", "YES", "on")]
    + [(v, False) for v in ("0", "false", "no", "Off", "")],
)
def test_boolean_environment_values(raw, expected):
    assert Settings.build({}, {"NEXUS_ENABLE_DOCS": raw}).enable_docs is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEXUS_API_PORT": "eighty"}, "NEXUS_API_PORT='eighty': api_port must be an integer"),
        ({"NEXUS_REQUEST_TIMEOUT": "soon"}, "NEXUS_REQUEST_TIMEOUT='soon': request_timeout"),
        ({"NEXUS_ENABLE_DOCS": "maybe"}, "NEXUS_ENABLE_DOCS='maybe': enable_docs must be a bool"),
    ],
)
def test_bad_environment_values_name_the_variable(env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.build({}, env)


def test_out_of_range_values_fail_clearly():
    with pytest.raises(ConfigurationError, match="api_prefix"):
        Settings.build({"api_prefix": "api"}, {})
    with pytest.raises(ConfigurationError, match="request_timeout must be positive"):
        Settings.build({"request_timeout": 0}, {})


def test_app_api_attributes_tune_the_app(monkeypatch):
    monkeypatch.delenv("NEXUS_REQUEST_TIMEOUT", raising=False)
    app = Nexus(api_port=8000, api_host="0.0.0.0", enable_docs=True, enable_cors=True)
    app.api.response_compression = True
    app.api.request_timeout = 30
    app.api.max_concurrent_requests = 100
    app.api.max_request_size = 10 * 1024 * 1024
    app.api.cors_enabled = True
    assert app.settings.response_compression is True
    assert app.settings.request_timeout == 30.0
    assert app.settings.enable_cors is True and app.api.cors_enabled is True
    origins = ["https://example.com", "https://app.example.com"]
    if plugin_installed("cors"):  # the spec's CORS lines: settings of the cors plugin
        app.api.cors_origins = origins
        assert app.settings.cors_origins == origins
    else:
        with pytest.raises(ConfigurationError, match="'cors' plugin"):
            app.api.cors_origins = origins


def test_spec_aliases_name_the_same_setting():
    app = core_app(port=9001, host="0.0.0.0", prefix="/v1", cors_enabled=True)
    s = app.settings
    assert (s.api_port, s.api_host, s.api_prefix, s.enable_cors) == (9001, "0.0.0.0", "/v1", True)
    app.api.port = 9002
    assert app.api.api_port == 9002 and app.api.port == 9002


def test_settings_freeze_when_the_app_is_built():
    app = Nexus(database=":memory:")
    app.create_app()
    with pytest.raises(ConfigurationError, match="frozen"):
        app.api.request_timeout = 1


# -- unknown names ---------------------------------------------------------------------------------
def test_unknown_keyword_suggests_the_closest_setting():
    with pytest.raises(ConfigurationError, match=r"rate_limt .*did you mean 'rate_limit'\?"):
        Nexus(rate_limt=10)


def test_unknown_app_api_name_suggests_the_closest_setting_on_write_and_read():
    app = core_app()
    with pytest.raises(ConfigurationError, match=r"did you mean 'request_timeout'\?"):
        app.api.request_timout = 5
    with pytest.raises(ConfigurationError, match=r"did you mean 'request_timeout'\?"):
        app.api.request_timout  # noqa: B018
    assert not hasattr(app.api, "request_timout")
    assert app.settings.request_timeout == 30.0


def test_unknown_name_without_a_close_match_says_so():
    with pytest.raises(ConfigurationError, match="wibble is not a setting"):
        core_app(wibble=1)


def test_plugin_setting_without_its_plugin_names_the_plugin():
    with pytest.raises(ConfigurationError) as info:
        core_app(cors_origins=["https://a.example"])
    assert str(info.value) == (
        "cors_origins is a setting of the 'cors' plugin (nexus-aio-cors), "
        "which is not installed or is disabled"
    )
    with pytest.raises(ConfigurationError, match=r"'batch' plugin \(nexus-aio-batch\)"):
        core_app(batch_max_items=3)
    with pytest.raises(ConfigurationError, match=r"'auth' plugin \(nexus-aio-auth\)"):
        core_app().api.auth_api_keys = ["k"]


def test_plugin_setting_with_its_plugin_disabled_says_it_is_disabled(monkeypatch):
    monkeypatch.setenv("NEXUS_DISABLE_PLUGINS", "cors")
    with pytest.raises(ConfigurationError, match="remove 'cors' from NEXUS_DISABLE_PLUGINS"):
        Nexus(database=":memory:", cors_origins=["https://a.example"])


def test_a_close_name_is_preferred_to_a_plugin_guess():
    with pytest.raises(ConfigurationError, match=r"did you mean 'session_ttl'\?"):
        core_app(sesion_ttl=5)


# -- types -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"request_timeout": "abc"}, "request_timeout must be a number (float), got 'abc'"),
        ({"request_timeout": True}, "request_timeout must be a number (float), got True"),
        ({"api_port": 80.5}, "api_port must be an integer (int), got 80.5"),
        ({"api_port": False}, "api_port must be an integer (int), got False"),
        ({"api_port": None}, "api_port must be an integer (int), got None"),
        ({"rate_limit": "10"}, "rate_limit must be an integer (int) or None, got '10'"),
        ({"enable_docs": "yes"}, "enable_docs must be a boolean (bool), got 'yes'"),
        (
            {"trusted_proxies": "10.0.0.1"},
            "trusted_proxies must be a list of strings (list[str]), got '10.0.0.1'",
        ),
        ({"trusted_proxies": ["a", 1]}, "trusted_proxies must be a list of strings"),
        ({"disable_plugins": "cors"}, "disable_plugins must be a list of strings"),
    ],
)
def test_wrong_typed_keyword_names_setting_type_and_value(settings, message):
    with pytest.raises(ConfigurationError) as info:
        core_app(**settings)
    assert message in str(info.value)


def test_wrong_typed_app_api_value_is_refused_and_keeps_the_old_value():
    app = core_app()
    with pytest.raises(ConfigurationError, match=r"request_timeout must be a number \(float\)"):
        app.api.request_timeout = "abc"
    with pytest.raises(ConfigurationError, match="max_items must be an integer"):
        app.api.max_items = True
    assert app.settings.request_timeout == 30.0 and app.settings.max_items == 100_000


def test_compatible_values_are_normalized():
    app = core_app(request_timeout=5, trusted_proxies=("10.0.0.1",), rate_limit=None)
    assert app.settings.request_timeout == 5.0 and isinstance(app.settings.request_timeout, float)
    assert app.settings.trusted_proxies == ["10.0.0.1"]
    assert app.settings.rate_limit is None
    app.api.sse_keepalive = 2
    assert isinstance(app.settings.sse_keepalive, float)


# -- the environment -------------------------------------------------------------------------------
def test_unknown_environment_variable_is_one_warning_per_process(monkeypatch, caplog):
    monkeypatch.setenv("NEXUS_REQUEST_TIMOUT", "5")
    monkeypatch.setenv("NEXUS_ZEPHYR_URL", "z://")
    monkeypatch.setenv("NEXUS_WORKER_CHILD", "0")  # set by the project for its own processes
    caplog.set_level(logging.WARNING, "nexus_aio")
    first = core_app()
    core_app()
    assert first.settings.request_timeout == 30.0  # ignored, not an error
    lines = [r.getMessage() for r in caplog.records if r.name == "nexus_aio"]
    typo = [line for line in lines if "NEXUS_REQUEST_TIMOUT" in line]
    assert typo == [
        "ignoring environment variable NEXUS_REQUEST_TIMOUT: did you mean NEXUS_REQUEST_TIMEOUT?"
    ]
    plugin = [line for line in lines if "NEXUS_ZEPHYR_URL" in line]
    assert len(plugin) == 1
    assert "zephyr_url is a setting of the 'zephyr' plugin (nexus-aio-zephyr)" in plugin[0]
    assert not [line for line in lines if "NEXUS_WORKER_CHILD" in line]


# -- feature switches ------------------------------------------------------------------------------
@pytest.mark.parametrize("feature", ["auth", "cors"])
def test_switch_without_a_providing_plugin_stops_startup(feature):
    app = core_app(**{f"enable_{feature}": True})
    with pytest.raises(ConfigurationError) as info:
        app.create_app()
    assert str(info.value) == (
        f"enable_{feature} is on but no installed, enabled plugin provides the '{feature}' "
        f"feature: pip install nexus-aio-{feature}"
    )


def test_switch_turned_on_through_app_api_is_checked_at_build():
    app = core_app()
    app.api.auth_enabled = True
    with pytest.raises(ConfigurationError, match="pip install nexus-aio-auth"):
        app.create_app()


def test_switch_with_its_plugin_disabled_says_how_to_enable_it():
    app = Nexus(database=":memory:", enable_auth=True, disable_plugins=["auth"])
    with pytest.raises(ConfigurationError) as info:
        app.create_app()
    assert str(info.value) == (
        "enable_auth is on but no installed, enabled plugin provides the 'auth' feature: "
        "pip install nexus-aio-auth (or remove 'auth' from NEXUS_DISABLE_PLUGINS)"
    )


def test_any_plugin_declaring_the_feature_provides_the_switch():
    app = core_app(enable_auth=True, enable_cors=True, plugins=[Provider("auth"), Provider("cors")])
    assert app.settings.features == {"auth", "cors"}
    app.create_app()  # no first-party plugin, yet both features are provided


def test_switch_off_needs_no_plugin():
    core_app(enable_auth=False, enable_cors=False).create_app()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_serve_exits_2_when_a_switch_has_no_provider(tmp_path, workers):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NEXUS_ENABLE_AUTH": "1",
        "NEXUS_DISABLE_PLUGINS": "auth",
    }
    done = subprocess.run(
        [sys.executable, "-m", "nexus_aio", "serve", "--port", "0", *workers],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "error: enable_auth is on but no installed, enabled plugin provides the 'auth' feature: "
        "pip install nexus-aio-auth (or remove 'auth' from NEXUS_DISABLE_PLUGINS)"
    ) in done.stderr
    assert "serving" not in done.stdout


# -- declarations ----------------------------------------------------------------------------------
def test_declaration_defaults_env_name_and_checks_its_default():
    setting = Setting("hello_names", list[str], ("a",))
    assert setting.env == "NEXUS_HELLO_NAMES" and setting.default == ["a"]
    with pytest.raises(ConfigurationError, match="hello_count must be an integer"):
        Setting("hello_count", int, "3")
    with pytest.raises(ConfigurationError, match="unsupported type"):
        Setting("hello_map", dict, {})
    with pytest.raises(ConfigurationError, match="lower_case identifier"):
        Setting("Hello", str, "")


def test_declared_setting_may_name_its_own_environment_variable():
    declared = [Setting("hello_port", int, 1, env="HELLO_PORT")]
    assert Settings.build({}, {"HELLO_PORT": "7"}, declared=declared).hello_port == 7
    with pytest.raises(ConfigurationError, match="HELLO_PORT='x': hello_port must be an integer"):
        Settings.build({}, {"HELLO_PORT": "x"}, declared=declared)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ([Setting("request_timeout", float, 1.0)], "'request_timeout', a core setting"),
        ([Setting("freeze", str, "")], "'freeze', a name Settings uses"),
        (
            [Setting("hello_x", int, 1), Setting("hello_x", str, "")],
            "'hello_x' is declared twice",
        ),
        (["hello_x"], "must return nexus_aio.Setting objects"),
    ],
)
def test_bad_declarations_fail_construction(declared, message):
    class Plugin:
        @hookimpl
        def register_settings(self, nexus):
            return declared

    with pytest.raises(ConfigurationError, match=message):
        core_app(plugins=[Plugin()])
