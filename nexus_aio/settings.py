"""Settings: constructor arguments > environment ``NEXUS_<NAME>`` > defaults, declared and checked.

The core's own settings are the fields of :class:`Settings`. A plugin declares its settings
(:class:`Setting`: name, type, default, environment variable, the feature it provides) through the
``register_settings`` hook; once declared they work exactly like core ones: constructor keyword,
``app.api.<name>``, ``NEXUS_<NAME>``, read as ``nexus.settings.<name>``.

Everything is checked when ``Nexus()`` is constructed:

- an unknown name (keyword or ``app.api.<name>``, read or write) is a :class:`UnknownSetting`
  error suggesting the closest known name, or naming the absent plugin whose setting it looks like
  (by convention a ``<feature>_`` prefix or ``enable_<feature>``, package ``nexus-aio-<feature>``);
- a value of the wrong type is a ``ConfigurationError`` naming the setting, the type and the value;
- an environment variable is parsed (lists comma-separated, booleans 1/0 true/false yes/no on/off)
  and a bad one is an error naming the variable; an unknown ``NEXUS_*`` variable is only a warning
  (the environment is shared with other programs), logged once per process.

The spec tunes the API after construction (``app.api.request_timeout = 30``), so the object stays
mutable until ``create_app()``; the application then works from a frozen copy
(:meth:`Settings.freeze`), which also refuses a feature switch (``enable_auth``...) that no
installed, enabled plugin provides.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nexus_aio.errors import ConfigurationError

log = logging.getLogger("nexus_aio")

ENV_PREFIX = "NEXUS_"
SWITCH_PREFIX = "enable_"
PLUGIN_PACKAGE = "nexus-aio-{feature}"  # where a first-party feature's plugin is published
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Spec spellings that name the same setting.
ALIASES = {
    "cors_enabled": "enable_cors",
    "auth_enabled": "enable_auth",
    "host": "api_host",
    "port": "api_port",
    "prefix": "api_prefix",
}

# Variables the project sets for its own processes: never settings, never warned about.
WORKER_CHILD_ENV = "NEXUS_WORKER_CHILD"  # set in `serve --workers N` children
INTERNAL_ENV = frozenset({WORKER_CHILD_ENV})

_SCALARS: dict[Any, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
}
_PLURALS: dict[Any, str] = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


class UnknownSetting(ConfigurationError, AttributeError):
    """A name that is no setting; also an ``AttributeError``, so ``hasattr`` stays truthful."""


@dataclass(frozen=True)
class Setting:
    """A setting a plugin declares (``register_settings``), typed like a core setting.

    ``type`` is ``bool``, ``int``, ``float``, ``str``, ``list[<one of those>]``, or one of these
    ``| None``. ``env`` defaults to ``NEXUS_<NAME>``. ``feature`` names the feature the declaring
    plugin provides (``"auth"`` for nexus-aio-auth: the one ``enable_auth`` switches on); name the
    settings of feature ``x`` ``x_*`` so that, with the plugin absent, the core can say which
    plugin a setting belongs to.
    """

    name: str
    type: Any
    default: Any = None
    env: str | None = None
    feature: str | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower() or self.name[0] == "_":
            raise ConfigurationError(f"setting name {self.name!r} must be a lower_case identifier")
        if not _supported(self.type):
            raise ConfigurationError(
                f"setting {self.name}: unsupported type {_type_name(self.type)} (use bool, int,"
                " float, str, list[...] of one of them, optionally | None)"
            )
        object.__setattr__(self, "default", check_value(self.name, self.default, self.type))
        if self.env is None:
            object.__setattr__(self, "env", ENV_PREFIX + self.name.upper())
        if self.feature is not None and not self.feature.isidentifier():
            raise ConfigurationError(f"setting {self.name}: bad feature name {self.feature!r}")

    @property
    def switches(self) -> str | None:
        """The feature this setting turns on, when it is a switch ``enable_<feature>``."""
        if self.type is bool and self.feature and self.name == SWITCH_PREFIX + self.feature:
            return self.feature
        return None

    def initial(self) -> Any:
        """A fresh default (lists are copied, so two apps never share one)."""
        return list(self.default) if isinstance(self.default, list) else self.default


@dataclass
class Settings:
    """The core settings, with their defaults (the reference is ``docs/settings.md``), plus those
    that plugins declare (read as attributes too). Build with :meth:`build`."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_prefix: str = ""
    enable_docs: bool = True
    enable_playground: bool | None = None  # None: follows enable_docs
    # Feature switches: the feature is provided by a plugin (see check_features).
    enable_cors: bool = field(default=False, metadata={"feature": "cors"})
    enable_auth: bool = field(default=False, metadata={"feature": "auth"})
    rate_limit: int | None = None
    rate_limit_burst: int | None = None
    endpoint_rate_limit: int = 100
    trusted_proxies: list[str] = field(default_factory=list)
    request_timeout: float = 30.0
    run_timeout: float = 3600.0
    max_concurrent_requests: int = 100
    max_queued_runs: int = 10_000
    max_request_size: int = 10 * 1024 * 1024
    max_upload_size: int = 100 * 1024 * 1024  # a multipart (file upload) request body
    response_compression: bool = False
    max_depth: int = 64
    max_key_length: int = 256
    max_items: int = 100_000
    session_ttl: float = 3600.0
    session_purge_interval: float | None = None  # None: half of session_ttl, within 0.5-60 s
    max_sessions: int = 100_000  # live sessions; a new one beyond it is a 503
    memory_sessions_max_bytes: int = 128 * 1024 * 1024  # memory session store: oldest evicted
    memory_executions_max_bytes: int = 256 * 1024 * 1024  # memory executions store: oldest finished
    sse_keepalive: float = 15.0
    cancel_on_disconnect: bool = True
    sse_send_timeout: float = 30.0  # a stream client that reads nothing for this long is dropped
    stream_resume_grace: float = 5.0  # a dropped stream's run waits this long for its client
    idempotency_ttl: float = 86400.0
    idempotency_max_keys: int = 10_000  # memory store: keys remembered (oldest dropped first)
    idempotency_max_bytes: int = 64 * 1024 * 1024  # memory store: bytes of remembered answers
    database: str = ".nexus/nexus.db"
    execution_retention_age: float = 7 * 86400.0
    execution_retention_count: int = 100_000
    execution_retention_interval: float = 600.0
    event_persist_interval: float = 0.25
    sync_workers: int = 32
    shutdown_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    log_format: str = "text"
    log_level: str = "INFO"
    access_log: bool = True
    disable_plugins: list[str] = field(default_factory=list)
    # Completion webhooks (docs/webhooks.md): Standard Webhooks signing key, whsec_<base64>.
    webhook_secret: str | None = None
    webhook_allowed_hosts: list[str] = field(default_factory=list)
    webhook_initial_delay: float = 1.0
    webhook_max_delay: float = 300.0
    webhook_max_attempts: int = 8
    webhook_timeout: float = 10.0
    # Schedules (docs/schedules.md)
    max_schedules: int = 10_000
    schedule_misfire_grace: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "_declared", {})
        object.__setattr__(self, "_values", {})

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        kwargs: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        declared: Iterable[Setting] = (),
    ) -> Settings:
        """Defaults, overridden by ``NEXUS_*`` variables, overridden by ``kwargs``, all checked.

        ``declared``: the plugins' settings (``Hooks.register_settings()``).
        """
        environ = os.environ if environ is None else environ
        plugin_settings = _index(declared)
        known = {**core_settings(), **plugin_settings}
        disabled = initial_value("disable_plugins", kwargs, environ)
        given: dict[str, Any] = {}
        for key, value in (kwargs or {}).items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise unknown_setting(name, known, disabled)
            given[name] = check_value(name, value, known[name].type)
        values: dict[str, Any] = {}
        for name, setting in known.items():
            if name in given:
                values[name] = given[name]
                continue
            raw = environ.get(setting.env or "")
            values[name] = (
                setting.initial()
                if raw is None
                else parse_env_value(name, raw, setting.type, env=setting.env)
            )
        warn_unknown_environment(environ, known, disabled)
        settings = cls(**{name: values[name] for name in core_settings()})
        settings._declared.update(plugin_settings)
        settings._values.update({name: values[name] for name in plugin_settings})
        settings.validate()
        return settings

    # -- attribute access: every name is a known, typed setting --------------------------------
    _declared: dict[str, Setting] = field(init=False, repr=False, compare=False)
    _values: dict[str, Any] = field(init=False, repr=False, compare=False)

    def _setting(self, name: str) -> Setting:
        setting = core_settings().get(name) or self.__dict__.get("_declared", {}).get(name)
        if setting is None:
            raise unknown_setting(name, self.known(), self.__dict__.get("disable_plugins", []))
        return setting

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        name = ALIASES.get(name, name)
        setting = self._setting(name)
        if self.__dict__.get("_frozen", False):
            raise ConfigurationError(
                f"Setting {name!r} is frozen once the app is built; set it before create_app()"
            )
        value = check_value(name, value, setting.type)
        if name in core_settings():
            object.__setattr__(self, name, value)
        else:
            self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: aliases and plugin settings.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in ALIASES:
            return getattr(self, ALIASES[name])
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise unknown_setting(name, self.known(), self.__dict__.get("disable_plugins", []))

    # -- what is known ------------------------------------------------------------------------
    def known(self) -> dict[str, Setting]:
        """Every setting of this app by name: the core's, then the plugins' declarations."""
        return {**core_settings(), **self.__dict__.get("_declared", {})}

    @property
    def features(self) -> frozenset[str]:
        """The features the app's plugins provide (``feature=`` of their declarations)."""
        declared = self.__dict__.get("_declared", {}).values()
        return frozenset(s.feature for s in declared if s.feature)

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        prefix = self.api_prefix
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigurationError(
                f"api_prefix must start with '/' and not end with '/', got {prefix!r}"
            )
        for name in (
            "request_timeout",
            "run_timeout",
            "max_concurrent_requests",
            "max_queued_runs",
            "max_request_size",
            "max_upload_size",
            "max_depth",
            "max_key_length",
            "session_ttl",
            "max_sessions",
            "memory_sessions_max_bytes",
            "memory_executions_max_bytes",
            "sse_keepalive",
            "sse_send_timeout",
            "header_timeout",
            "idempotency_max_keys",
            "idempotency_max_bytes",
            "webhook_initial_delay",
            "webhook_max_delay",
            "webhook_max_attempts",
            "webhook_timeout",
            "max_schedules",
            "schedule_misfire_grace",
            "body_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.stream_resume_grace < 0:
            raise ConfigurationError(
                f"stream_resume_grace must be >= 0, got {self.stream_resume_grace!r}"
            )
        for name in ("rate_limit", "rate_limit_burst", "session_purge_interval"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        if self.webhook_secret is not None:
            from nexus_aio.webhooks import WebhookSecret

            WebhookSecret.parse(self.webhook_secret)  # a malformed secret stops startup
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(
                f"log_format must be 'text' or 'json', got {self.log_format!r}"
            )

    def check_features(self) -> None:
        """Refuse a switched-on feature that no installed, enabled plugin provides.

        ``enable_<feature>`` is provided by a plugin declaring settings with that ``feature``;
        without one the switch would be silently ignored (an ``enable_auth`` app serving every
        route unauthenticated), so startup stops and names the package to install.
        """
        provided = self.features
        for name, setting in self.known().items():
            feature = setting.switches
            if feature is None or feature in provided or not getattr(self, name):
                continue
            message = (
                f"{name} is on but no installed, enabled plugin provides the {feature!r} "
                f"feature: pip install {PLUGIN_PACKAGE.format(feature=feature)}"
            )
            if feature in self.disable_plugins:
                message += f" (or remove {feature!r} from NEXUS_DISABLE_PLUGINS)"
            raise ConfigurationError(message)

    def freeze(self) -> Settings:
        """A frozen, checked copy for a running app."""
        copy = dataclasses.replace(self)
        copy._declared.update(self._declared)
        copy._values.update(self._values)
        copy.validate()
        copy.check_features()
        object.__setattr__(copy, "_frozen", True)
        return copy


# -- the core's settings as declarations ----------------------------------------------------------
_CORE: dict[str, Setting] | None = None


def core_settings() -> dict[str, Setting]:
    """The fields of :class:`Settings` as :class:`Setting` declarations (computed once)."""
    global _CORE
    if _CORE is None:
        hints = typing.get_type_hints(Settings)
        core: dict[str, Setting] = {}
        for f in dataclasses.fields(Settings):
            if f.name.startswith("_"):
                continue
            factory: Any = f.default_factory
            default = factory() if f.default is dataclasses.MISSING else f.default
            core[f.name] = Setting(
                f.name, hints[f.name], default, feature=f.metadata.get("feature")
            )
        _CORE = core
    return _CORE


def _index(declared: Iterable[Setting]) -> dict[str, Setting]:
    """Plugin declarations by name; a name declared twice or taken by the core is an error."""
    out: dict[str, Setting] = {}
    core = core_settings()
    for setting in declared:
        if not isinstance(setting, Setting):
            raise ConfigurationError(
                f"register_settings must return nexus_aio.Setting objects, got {setting!r}"
            )
        if setting.name in core or setting.name in ALIASES:
            raise ConfigurationError(f"a plugin declares {setting.name!r}, a core setting")
        if hasattr(Settings, setting.name):
            raise ConfigurationError(f"a plugin declares {setting.name!r}, a name Settings uses")
        previous = out.get(setting.name)
        if previous is not None and previous != setting:
            raise ConfigurationError(f"setting {setting.name!r} is declared twice, differently")
        out[setting.name] = setting
    return out


def initial_value(
    name: str, kwargs: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> Any:
    """A core setting read before the others (``disable_plugins``: the plugins come first)."""
    setting = core_settings()[name]
    if kwargs and name in kwargs:
        return check_value(name, kwargs[name], setting.type)
    raw = (os.environ if environ is None else environ).get(setting.env or "")
    if raw is None:
        return setting.initial()
    return parse_env_value(name, raw, setting.type, env=setting.env)


# -- unknown names ------------------------------------------------------------------------------
def _closest(name: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.8)
    return found[0] if found else None


def _absent_feature(name: str, known: Iterable[str]) -> str | None:
    """The feature whose plugin ``name`` would belong to: ``<feature>_...`` or
    ``enable_<feature>``, unless a known setting shares that prefix (then it is no plugin's)."""
    if name.startswith(SWITCH_PREFIX):
        feature = name[len(SWITCH_PREFIX) :]
        return feature if feature.isidentifier() else None
    feature, sep, rest = name.partition("_")
    if not sep or not rest or not feature.isidentifier():
        return None
    if any(k.startswith(feature + "_") for k in known):
        return None
    return feature


def _absent_plugin(name: str, feature: str, disabled: Iterable[str]) -> str:
    package = PLUGIN_PACKAGE.format(feature=feature)
    where = (
        f"which is disabled (remove {feature!r} from NEXUS_DISABLE_PLUGINS)"
        if feature in set(disabled)
        else "which is not installed or is disabled"
    )
    return f"{name} is a setting of the {feature!r} plugin ({package}), {where}"


def unknown_setting(name: str, known: Iterable[str], disabled: Iterable[str]) -> UnknownSetting:
    """The error for ``name``: the closest known name, else the absent plugin it belongs to."""
    known = list(known)
    close = _closest(name, [*known, *ALIASES])
    if close is not None:
        return UnknownSetting(
            f"{name} is not a setting: did you mean {ALIASES.get(close, close)!r}?"
        )
    feature = _absent_feature(name, known)
    if feature is not None:
        return UnknownSetting(_absent_plugin(name, feature, disabled))
    return UnknownSetting(f"{name} is not a setting (see docs/settings.md)")


_WARNED_ENV: set[str] = set()


def warn_unknown_environment(
    environ: Mapping[str, str], known: Mapping[str, Setting], disabled: Iterable[str] = ()
) -> None:
    """Log one warning per unknown ``NEXUS_*`` variable, once per process."""
    by_env = {s.env: s.name for s in known.values() if s.env}
    for var in environ:
        if not var.startswith(ENV_PREFIX) or var in by_env or var in INTERNAL_ENV:
            continue
        if var in _WARNED_ENV:
            continue
        _WARNED_ENV.add(var)
        name = var[len(ENV_PREFIX) :].lower()
        close = _closest(var, by_env)
        feature = _absent_feature(name, known) if name else None
        if close is not None:
            hint = f"did you mean {close}?"
        elif feature is not None:
            hint = _absent_plugin(name, feature, disabled)
        else:
            hint = "no setting has that name"
        log.warning("ignoring environment variable %s: %s", var, hint)


# -- types --------------------------------------------------------------------------------------
def _split_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _supported(tp: Any) -> bool:
    _, inner = _split_optional(tp)
    if inner in _SCALARS:
        return True
    args = typing.get_args(inner)
    return typing.get_origin(inner) is list and len(args) == 1 and args[0] in _SCALARS


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def describe_type(tp: Any) -> str:
    """``a number (float)``, ``a list of strings (list[str])``, ``... or None``."""
    optional, inner = _split_optional(tp)
    if inner in _SCALARS:
        text = f"{_SCALARS[inner]} ({_type_name(inner)})"
    elif typing.get_origin(inner) is list:
        item = typing.get_args(inner)[0]
        text = f"a list of {_PLURALS.get(item, _type_name(item))} ({_type_name(inner)})"
    else:
        text = _type_name(inner)
    return text + " or None" if optional else text


def _scalar(value: Any, tp: Any) -> tuple[bool, Any]:
    if tp is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):  # a bool is an int to Python, never to a setting
        return False, value
    if tp is float:
        return isinstance(value, int | float), float(value) if isinstance(value, int) else value
    return isinstance(value, tp), value


def check_value(name: str, value: Any, tp: Any) -> Any:
    """``value`` if it has the setting's type (an int for a float becomes a float, a tuple for a
    list a list); else a ``ConfigurationError`` naming the setting, the type and the value."""
    optional, inner = _split_optional(tp)
    if value is None:
        if optional:
            return None
    elif typing.get_origin(inner) is list:
        if isinstance(value, list | tuple):
            item = typing.get_args(inner)[0]
            checked = [_scalar(v, item) for v in value]
            if all(ok for ok, _ in checked):
                return [v for _, v in checked]
    else:
        ok, converted = _scalar(value, inner)
        if ok:
            return converted
    raise ConfigurationError(f"{name} must be {describe_type(tp)}, got {value!r}")


def parse_env_value(name: str, raw: str, tp: Any, env: str | None = None) -> Any:
    """Turn an environment string into the setting's type; a bad one names the variable."""
    env = env or ENV_PREFIX + name.upper()
    text = raw.strip()
    optional, inner = _split_optional(tp)
    if optional and text.lower() in ("", "none", "null"):
        return None
    try:
        if typing.get_origin(inner) is list:
            item = typing.get_args(inner)[0]
            return [_parse_scalar(p.strip(), item) for p in text.split(",") if p.strip()]
        return _parse_scalar(text, inner)
    except ValueError:
        raise ConfigurationError(
            f"{env}={raw!r}: {name} must be {describe_type(tp)}"
            + (" (1/0, true/false, yes/no, on/off)" if inner is bool else "")
        ) from None


def _parse_scalar(text: str, tp: Any) -> Any:
    if tp is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    return text
