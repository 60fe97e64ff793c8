"""Settings: constructor arguments > environment ``NEXUS_<NAME>`` > defaults.

One object holds every setting. The spec tunes the API after construction
(``app.api.request_timeout = 30``), so the object stays mutable until ``create_app()``;
the application then works from a frozen snapshot (:meth:`Settings.freeze`).
Settings that plugins own (``auth_api_keys``, ``redis_url``...) live in ``extra`` and are read
with :meth:`Settings.get`, which applies the same environment rule.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nexus_aio.errors import ConfigurationError

ENV_PREFIX = "NEXUS_"
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


@dataclass
class Settings:
    """Every core setting, with its default. See the README's settings table."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_prefix: str = ""
    enable_docs: bool = True
    enable_cors: bool = False
    enable_auth: bool = False
    rate_limit: int | None = None
    rate_limit_burst: int | None = None
    endpoint_rate_limit: int = 100
    trusted_proxies: list[str] = field(default_factory=list)
    request_timeout: float = 30.0
    run_timeout: float = 3600.0
    max_concurrent_requests: int = 100
    max_queued_runs: int = 10_000
    max_request_size: int = 10 * 1024 * 1024
    response_compression: bool = False
    max_depth: int = 64
    max_key_length: int = 256
    max_items: int = 100_000
    cors_origins: list[str] = field(default_factory=list)
    cors_methods: list[str] = field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    )
    cors_headers: list[str] = field(
        default_factory=lambda: [
            "Content-Type",
            "Authorization",
            "X-Request-ID",
            "X-Session-ID",
            "Idempotency-Key",
            "Last-Event-ID",
        ]
    )
    cors_credentials: bool = False
    session_ttl: float = 3600.0
    sse_keepalive: float = 15.0
    cancel_on_disconnect: bool = True
    idempotency_ttl: float = 86400.0
    database: str = ".nexus/nexus.db"
    execution_retention_age: float = 7 * 86400.0
    execution_retention_count: int = 100_000
    sync_workers: int = 32
    shutdown_timeout: float = 10.0
    header_timeout: float = 10.0
    log_format: str = "text"
    log_level: str = "INFO"
    access_log: bool = True
    disable_plugins: list[str] = field(default_factory=list)
    batch_max_items: int = 100
    batch_concurrency: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls, kwargs: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, overridden by ``NEXUS_*`` variables, overridden by ``kwargs``."""
        environ = os.environ if environ is None else environ
        kwargs = {ALIASES.get(k, k): v for k, v in (kwargs or {}).items()}
        hints = _field_types()
        values: dict[str, Any] = {}
        for name, tp in hints.items():
            if name == "extra":
                continue
            if name in kwargs:
                values[name] = kwargs.pop(name)
                continue
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = parse_env_value(name, raw, tp)
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update(kwargs)
        settings = cls(**values, extra=extra)
        settings._environ = environ
        settings.validate()
        return settings

    _environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        name = ALIASES.get(name, name)
        if name.startswith("_") or name in _field_types():
            if getattr(self, "_frozen", False):
                raise ConfigurationError(
                    f"Setting {name!r} is frozen once the app is built; set it before create_app()"
                )
            object.__setattr__(self, name, value)
        else:
            self.extra[name] = value

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: aliases and plugin settings.
        if name.startswith("__"):
            raise AttributeError(name)
        if name in ALIASES:
            return getattr(self, ALIASES[name])
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"no setting named {name!r}")

    def get(self, name: str, default: Any = None, *, type: Any = str) -> Any:
        """A plugin setting: constructor ``extra`` > env ``NEXUS_<NAME>`` > ``default``."""
        if name in self.extra:
            return self.extra[name]
        if name in _field_types():
            return getattr(self, name)
        raw = self._environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            return default
        return parse_env_value(name, raw, type)

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
            "max_depth",
            "max_key_length",
            "session_ttl",
            "sse_keepalive",
            "header_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("rate_limit", "rate_limit_burst"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(
                f"log_format must be 'text' or 'json', got {self.log_format!r}"
            )

    def freeze(self) -> Settings:
        """A frozen copy for a running app."""
        copy = dataclasses.replace(self, extra=dict(self.extra))
        copy._environ = self._environ
        copy.validate()
        object.__setattr__(copy, "_frozen", True)
        return copy


def parse_env_value(name: str, raw: str, tp: Any) -> Any:
    """Turn an environment string into the setting's type, with a clear error."""
    raw = raw.strip()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("", "none", "null"):
            return None
        tp = next(a for a in args if a is not type(None))
        origin = typing.get_origin(tp)
    try:
        if tp is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if origin is list or tp is list:
            return [part.strip() for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigurationError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None
    return raw


_FIELD_TYPES: dict[str, Any] | None = None


def _field_types() -> dict[str, Any]:
    global _FIELD_TYPES
    if _FIELD_TYPES is None:
        hints = typing.get_type_hints(Settings)
        _FIELD_TYPES = {
            f.name: hints[f.name]
            for f in dataclasses.fields(Settings)
            if not f.name.startswith("_")
        }
    return _FIELD_TYPES
